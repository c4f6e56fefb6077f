"""Write the folder that runs `spic serve`'s page as a Hugging Face Space, and optionally upload it.

    python scripts/make_space.py space_out                 # app.py, requirements.txt, README.md, src/
    python scripts/make_space.py space_out --push user/spic-demo

The upload goes through the same huggingface_hub path as the models (spic_diffusers.hub).
"""

from __future__ import annotations

import argparse
import sys

from spic_diffusers.cli import add_overwrite_argument


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", help="folder to write (created; must be empty unless --overwrite)")
    parser.add_argument("--push", metavar="REPO_ID", default=None, help="upload the folder as this gradio Space")
    parser.add_argument("--private", action="store_true", help="create the Space as private")
    add_overwrite_argument(parser, "the folder's contents")
    args = parser.parse_args(argv)
    from spic_diffusers.hub import HubUnreachableError
    from spic_diffusers.serve.app import ServeUnavailableError, import_gradio
    from spic_diffusers.serve.space import SpaceError, push_space, write_space

    try:
        import_gradio()
        folder = write_space(args.output_dir, overwrite=args.overwrite)
        print(f"wrote the Space folder {folder} (run it locally with: python {folder / 'app.py'})")
        if args.push:
            print(f"uploaded: {push_space(folder, args.push, private=args.private)}")
    except (SpaceError, ServeUnavailableError, HubUnreachableError, ValueError) as err:
        print(f"make_space: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
