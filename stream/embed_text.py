"""What part of an article is embedded: the title, then the lead, then a window of the body.

all-MiniLM-L6-v2 reads at most 256 word pieces (about 1,000 characters of English news), so
embedding a whole article only embeds its start anyway, and a long body dilutes the event with
background paragraphs. The window below was chosen on the BASIL full articles and the NeuS
headline + lead records (bench/clustering_quality.py, numbers in docs/clustering.md).
"""

from __future__ import annotations

import re

from stream.text import normalize_whitespace

# Characters of body text kept after the title. BASIL full articles, B-cubed F1 by window: 0 (title
# only) 0.709, 300 0.814, 600 0.892, 1000 0.929, 2000 0.925 (docs/clustering.md); the model's
# 256-piece limit cuts anything much longer than ~1,000 characters anyway.
BODY_WINDOW_CHARS = 1000
TITLE_SEPARATOR = ". "  # the title reads as its own sentence
_SENTENCE_END = re.compile(r"[.!?؟。](?=\s)")


def embed_text(title: str, text: str, *, body_chars: int = BODY_WINDOW_CHARS) -> str:
    """``title. <first body_chars of text>``, whitespace-normalised, cut at a sentence end when one is near.

    A body that starts by repeating the title (common in extracted pages) does not repeat it.
    ``body_chars=0`` embeds the title alone (or the text when there is no title).
    """
    head = normalize_whitespace(title)
    body = normalize_whitespace(text)
    if head and body.startswith(head):
        body = body[len(head) :].lstrip(" .:-")
    if body_chars <= 0:
        return head or body[:BODY_WINDOW_CHARS]
    window = body[:body_chars]
    if len(body) > body_chars:
        ends = [m.end() for m in _SENTENCE_END.finditer(window)]
        if ends and ends[-1] > body_chars // 2:
            window = window[: ends[-1]]
    if not head:
        return window
    if not window:
        return head
    sep = " " if head.endswith((".", "!", "?", "؟", ":")) else TITLE_SEPARATOR
    return head + sep + window
