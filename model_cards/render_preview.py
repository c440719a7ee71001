"""Render a model folder's README.md (front matter + Markdown) to card_preview.html, to look at a card as a picture.

    python model_cards/render_preview.py outputs/mnn-resnet18/model
    chromium --headless --no-sandbox --screenshot=card.png --window-size=1000,3000 \
        file://$PWD/outputs/mnn-resnet18/model/card_preview.html
"""

import html
import sys
from pathlib import Path

import markdown  # installed with tensorboard

STYLE = """body { font-family: sans-serif; max-width: 900px; margin: 20px auto; font-size: 14px; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: 4px 8px; }
pre { background: #f4f4f4; padding: 8px; overflow-x: auto; } img { max-width: 420px; }
.meta { background: #eef; font-size: 11px; }"""


def main(folder: Path) -> Path:
    _, front_matter, body = (folder / "README.md").read_text().split("---\n", 2)
    page = (f"<html><head><meta charset='utf-8'><style>{STYLE}</style></head><body>"
            f"<pre class='meta'>{html.escape(front_matter)}</pre>"
            f"{markdown.markdown(body, extensions=['tables', 'fenced_code'])}</body></html>")
    output = folder / "card_preview.html"
    output.write_text(page)
    return output


if __name__ == "__main__":
    print(main(Path(sys.argv[1])))
