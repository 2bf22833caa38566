"""Story identity: canonical URLs, stable ids, and the normalised title used for near-duplicates."""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata
import zlib
from datetime import datetime
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

TRACKING_PARAMS = frozenset(
    {
        "fbclid",
        "gclid",
        "dclid",
        "msclkid",
        "yclid",
        "mc_cid",
        "mc_eid",
        "_hsenc",
        "_hsmi",
        "mkt_tok",
        "cmpid",
        "cmp",
        "ocid",
        "ncid",
        "taid",
        "sr_share",
        "smid",
        "smtyp",
        "guccounter",
        "guce_referrer",
        "guce_referrer_sig",
        "ref",
        "ref_src",
        "referrer",
        "feedtype",
        "feedname",
        "rss",
        "cid",
        "s_cid",
        "igshid",
    }
)
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def _is_tracking(name: str) -> bool:
    n = name.lower()
    return n.startswith("utm_") or n in TRACKING_PARAMS


def resolve_url(url: str | None, base: str | None) -> str | None:
    """``url`` made absolute against ``base``; ``None`` for empty or non-http(s) results."""
    if not url or not url.strip():
        return None
    absolute = urljoin(base or "", url.strip())
    return absolute if urlsplit(absolute).scheme in ("http", "https") else None


_PLAIN_PAIR = re.compile(r"[A-Za-z0-9._\-]+(?:=[A-Za-z0-9._\-]*)?")
"""A query pair that ``parse_qsl`` + ``urlencode`` leave as they are (the fast path below)."""
_PLAIN_NETLOC = re.compile(r"[a-z0-9.\-]+")


def _plain_query(query: str) -> str | None:
    """``query`` canonicalised without the parse/encode round trip, or None when it needs it.

    Equal to the general path's result for pairs of unreserved characters, which is nearly all
    real-world query strings; anything else (escapes, ``+``, ``;``, Unicode) takes the general path.
    """
    kept: list[tuple[str, str]] = []
    for pair in query.split("&"):
        if not pair:
            continue
        if not _PLAIN_PAIR.fullmatch(pair):
            return None
        name, _, value = pair.partition("=")
        if not _is_tracking(name):
            kept.append((name, value))
    kept.sort()
    return "&".join(f"{k}={v}" for k, v in kept)


def canonical_url(url: str) -> str:
    """Lowercase scheme and host, default port and fragment dropped, tracking params removed,
    remaining query parameters sorted, empty path as ``/``."""
    parts = urlsplit(url.strip())
    netloc = parts.netloc
    if (
        parts.path
        and parts.scheme in _DEFAULT_PORTS
        and _PLAIN_NETLOC.fullmatch(netloc)
        and not netloc.startswith("www.")
    ):
        # already-lower host without port or credentials: only the query may need work
        query = _plain_query(parts.query) if parts.query else ""
        if query is not None:
            return urlunsplit((parts.scheme, netloc.rstrip("."), parts.path, query, ""))
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower().rstrip(".")
    if host.startswith("www."):
        host = host[4:]
    netloc = host
    if parts.port is not None and str(parts.port) != _DEFAULT_PORTS.get(scheme):
        netloc = f"{host}:{parts.port}"
    kept = sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _is_tracking(k))
    path = parts.path or "/"
    return urlunsplit((scheme, netloc, path, urlencode(kept), ""))


_URL_START = re.compile(r"https?://[^\s/]+", re.IGNORECASE)


def looks_like_url(value: str) -> bool:
    return _URL_START.match(value.strip()) is not None


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def story_id(
    *,
    source: str,
    title: str,
    guid: str | None = None,
    url: str | None = None,
    published_at: datetime | None = None,
) -> str:
    """A stable id: the GUID (canonicalised when it is a URL; scoped to the source when not),
    else the canonical URL, else a hash of source + title + publication time.

    Ids look like ``url:<hash>``, ``guid:<hash>`` or ``hash:<hash>`` so their basis is visible.
    """
    if guid and guid.strip():
        g = guid.strip()
        if looks_like_url(g):
            return "url:" + _digest(canonical_url(g))
        return "guid:" + _digest(f"{source}\x1f{g}")
    if url and looks_like_url(url):
        return "url:" + _digest(canonical_url(url))
    when = published_at.isoformat() if published_at else ""
    return "hash:" + _digest(f"{source}\x1f{title_key(title)}\x1f{when}")


# -- titles -----------------------------------------------------------------------------------
_PREFIX = re.compile(
    r"^\s*(?:(?:update|refile|corrected|correction|rpt|repeat|recasts?|breaking|exclusive|urgent|flash|"
    r"wrapup|analysis|factbox|instant view|timeline)\s*(?:\d+\s*)?[-:|]+\s*)+",
    re.IGNORECASE,
)
_SUFFIX = re.compile(
    r"\s+[-|–—]\s+(?:reuters|bloomberg|ap|afp|cnbc|marketwatch|the wall street journal|wsj|"
    r"financial times|ft|barron'?s|yahoo finance|seeking alpha|business wire|pr newswire|globenewswire)\s*$",
    re.IGNORECASE,
)
_NON_WORD = re.compile(r"[^\w%$.]+|(?<!\d)\.|\.(?!\d)", re.UNICODE)
STOPWORDS = frozenset(
    "a an the and or of to in on for with as at by from is are was were be been its it this that".split()
)


def title_key(title: str) -> str:
    """The title reduced for comparison: wire prefixes ("UPDATE 1-", "REFILE-") and trailing
    outlet names dropped, NFKC-casefolded, punctuation removed, whitespace collapsed."""
    t = title.strip() if title.isascii() else unicodedata.normalize("NFKC", title).strip()
    t = _PREFIX.sub("", t)  # the pattern repeats itself: "REFILE-UPDATE 2-" goes in one pass
    if " " in t:
        t = _SUFFIX.sub("", t)
    t = t.casefold()
    t = _NON_WORD.sub(" ", t)
    return " ".join(t.split())


_SYNONYMS = {
    "bln": "billion",
    "bn": "billion",
    "mln": "million",
    "mn": "million",
    "pct": "%",
    "percent": "%",
    "per cent": "%",
    "qtr": "quarter",
    "q/q": "quarter",
    "yr": "year",
    "shr": "share",
    "shrs": "shares",
}


COMMON_WORDS = frozenset(
    "shares stock stocks says said new year years quarter quarterly us u.s report reports reported after over up "
    "down market markets inc corp co ltd plc group holdings billion million % rise rises rose fall falls fell "
    "profit profits sales revenue results price prices deal deals bank banks first second third company "
    "companies ceo will not more than into amid ahead out off its his her their two three per cent higher lower "
    "record sees see says".split()
)
"""Frequent headline words; they go last in the token order, so prefixes hold the rarer words."""


@functools.lru_cache(maxsize=1 << 16)
def token_order(token: str) -> tuple[int, int]:
    """A fixed global order of tokens (common words last) for prefix filtering."""
    return (token in COMMON_WORDS, zlib.crc32(token.encode("utf-8")))


def title_tokens(key: str) -> frozenset[str]:
    """The content words of a :func:`title_key`, wire abbreviations expanded ("bln" -> "billion"),
    for Jaccard similarity."""
    return frozenset(_SYNONYMS.get(w, w) for w in key.split() if w not in STOPWORDS)
