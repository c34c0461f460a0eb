"""What counts as CJK text, defined once (as regex character-class bodies).

CJK: every character of the scripts written without spaces between words (Han ideographs of every block,
kana, hangul, radicals, bopomofo) and their punctuation and full-width forms: the splitter may break beside
any of them, and a token estimate counts each as about one token. HAN: the ideographs alone, what jieba
segments and what marks a question as Chinese.
"""

from __future__ import annotations

import re

HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
CJK = "\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef\U00020000-\U0003134f"

CJK_CHAR = re.compile(f"[{CJK}]")
HAN_CHAR = re.compile(f"[{HAN}]")
HAN_RUN = re.compile(f"[{HAN}]+")
