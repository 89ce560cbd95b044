"""Every relative link and image of the README and docs/ resolves: the file, and the heading it names."""
import glob
import os
import re

import pytest

from conftest import ROOT

PAGES = [os.path.join(ROOT, "README.md"), *sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))]


def unfenced(text):
    """The page without its fenced code blocks (whose '# comments' are no headings)."""
    return re.sub(r"```.*?```", "", text, flags=re.S)


def prose(text):
    """The page without its code: fenced blocks and inline code spans hold no links."""
    return re.sub(r"`[^`\n]*`", "", unfenced(text))


def targets(text):
    """The relative targets of the page's links and images (markdown and <img src>)."""
    found = re.findall(r"\]\(([^)\s]+)\)", text) + re.findall(r'<img [^>]*src="([^"]+)"', text)
    return [t for t in found if not re.match(r"[a-z]+:", t)]


def anchor(heading):
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path):
    with open(path) as f:
        return {anchor(line.lstrip("#")) for line in unfenced(f.read()).splitlines() if line.startswith("#")}


@pytest.mark.parametrize("page", PAGES, ids=[os.path.relpath(p, ROOT) for p in PAGES])
def test_every_relative_link_and_image_resolves(page):
    with open(page) as f:
        text = prose(f.read())
    broken = []
    for target in targets(text):
        path, _, fragment = target.partition("#")
        resolved = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
        if not os.path.exists(resolved) or (fragment and fragment not in anchors(resolved)):
            broken.append(target)
    assert broken == []


def test_the_link_check_sees_links_and_catches_a_broken_one(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# A heading (`--x`)\n[ok](page.md#a-heading---x) ![img](gone.png) [web](https://example.com)\n"
                    "`[code](code.md)`\n```\n# not a heading\n[not a link](in-code.md)\n```\n")
    assert targets(prose(page.read_text())) == ["page.md#a-heading---x", "gone.png"]
    assert anchors(str(page)) == {"a-heading---x"}
