"""How a configuration is chosen, and how well the chosen model is expected to do on unseen texts.

This module holds the rules: which rows are held out (made by ``stc.folds``: ``resolve_cv``, ``resolve_repeats``,
``make_folds``, ``split_rows``, ``estimate_blocks``), how a candidate is chosen (``Selector``) and how a choice is
scored without the block it saw (``leave_one_block_out``). The two protocols that apply them are objects of
``stc.protocol`` (``KFolds``, ``OneSplit``); the two-stage search and the replay its estimate needs are ``stc.search.TwoStageSearch``.

Two protocols:

* **Cross-validation** (``cv=k``): stratified, seeded k folds over train + validation; the probes are refitted
  inside each fold, so no neuron is chosen by the labels of the fold it is scored on. A candidate's score is the
  mean of its fold scores. ``cv="auto"`` uses cross-validation up to ``AUTO_CV_LIMIT`` texts: below it one
  validation split is a few hundred to a few thousand texts, whose standard error (1-3 points) is as large as the
  differences the search chooses between; above it the split is large enough (> 4,000 texts, standard error < 0.8
  points) and k refits of every probe would cost more than they buy. It uses 5 folds below ``FEWER_FOLDS_FROM``
  texts and 3 folds from there. Every text is scored once whatever k, so the held-out noise does not grow with
  fewer folds, while the work falls (k - 1 passes over every text: 3 folds do half the work of 5). From 5,000
  texts each of 3 folds still trains on 3,300 or more. The price, measured on full MR (9,453 texts, 5 seeds):
  0.8 +/- 0.3 points of test accuracy (models fitted on 2/3 of the texts instead of 4/5 choose a little worse),
  for a first fit 1.74x the paper's protocol's time instead of 2.5x (``benchmarks/README.md``, "Selection").
  ``cv=5`` buys the points back. Rare classes change neither the protocol nor k (many-class data always has
  some): a class with fewer texts than folds has its texts held out in different folds, and a class of one text
  trains in every fold and is scored in none (``make_folds``). ``cv_repeats`` repeats the k folds over several
  seeded partitions (repeated stratified k-fold; ``"auto"``: up to ``MAX_REPEATS`` below ``REPEATED_CV_BELOW``
  texts, ``stc.folds.resolve_repeats``): every candidate is scored on each partition's folds, so which texts
  happened to share a fold matters less; the standard errors stay one partition's (``Selector``). Not the
  default: at 8 and 32 texts per class (MR, BBC News; ``benchmarks/README.md``, "Few labels") it took the fit
  about 10x as long and did not raise test scores (the noise of having few texts is not the partition's).
* **One validation split**: the given validation texts, else a seeded stratified ``validation_size`` of the
  training texts (``split_rows``); the probes' C and every choice on them, the final model trained on the rest.
  ``cv=None`` is the paper's protocol: the best validation score wins, among sparse readouts only. ``cv="auto"``
  above ``AUTO_CV_LIMIT`` texts is one split too, but keeps the one-standard-error rule (over the estimate's blocks
  of the validation rows) and the dense and hybrid readouts.

Choice (``Selector``): with cross-validation, the one-standard-error rule (Hastie, Tibshirani & Friedman, *Elements
of Statistical Learning*, 7.10), applied as there along the best candidate's own regularisation path: among the
candidates that simplify the best one (same readout, representations and poolings; smaller or equal η, exit layer
and C) and whose mean is within one standard error of it, the simplest wins: fewest features, then the shallowest
exit layer, then the strongest regularisation (smallest C). Every candidate is scored on the same folds, so the
standard error used is that of the paired fold-by-fold differences from the best candidate: the part of the
fold-to-fold variation that all candidates share (an easy or a hard fold) is not noise between them. Why along
the path and not over every candidate: with a few hundred texts, dozens of unrelated tiny candidates (one neuron
per layer, other poolings) sit within one standard error by luck, and the simplest of them is the luckiest (seen
on MR with 500 training texts, 5 seeds, in a one-off comparison: 3.2 test points lost against the path rule). The
path rule follows ESL's own use of the rule, along one regularisation path; ``benchmarks/bench_selection.py``
measures it against taking the best score on three datasets (its ablation column). The head is one more step of
the path: a linear head is simpler than an MLP head (``stc.heads.MLPHead``, the search's third stage) on the same
or fewer neurons, so an MLP leader gives way to any linear head on its path within one paired standard error, and
an MLP is the model only where it beats them all beyond noise. With ``cv=None``, the best
validation score wins (ties as above). The estimator's ``selection_rule`` overrides the choice ("one_se" or
"best"; "auto" is the above), and its ``readout_kinds`` which kinds of readout the search builds.

The embedding floor (``embedding_floor``; with the one-standard-error rule, when dense readouts are searched): the
last layer's mean-pooled hidden state, read whole, is the sentence-embedding baseline itself: the model a user of the
backbone would take without any search, and so the default the neurons have to beat. The search's choice stands
only if its honest per-block scores (the estimate's, below: each block scored by the candidate the search chooses
without that block) beat the embedding readout's block scores by more than ``FLOOR_SES`` (two) paired standard
errors (``selection_["floor_margin"]``: the margin and its error); otherwise the embedding readout is the model, at
the C the one-standard-error rule chooses among its Cs, the smallest within one paired error of its best
(``selection_["floor"]`` names its array, else None; ``expected_score_`` is then its own cross-validated score).
Why the honest scores and not the chosen candidate's own: with few texts every candidate's fold score is noise and
the best of a hundred of them is far above its truth; compared by its own scores, the winner of a pure-noise search
beat the embedding by 20 points. Seen at 8 texts per class (issue 23): the search's choice 12 points below the
embedding, below the majority class. Where the neurons are better beyond noise (more texts) they still win.

Estimate (``stc.search.TwoStageSearch.expected_score``, with ``leave_one_block_out``): the held-out rows are cut
into blocks (the folds; with one split, 5 stratified blocks of the validation rows). For each block the search is
replayed from the other blocks' scores: its stage-1 leaders are chosen on them (``leader_on``; the second
stage around any other leader is run for the purpose), the same rule then chooses among stage 1 and that second
stage, and the chosen candidate's score on the left-out block is recorded; their mean, and its standard error, is
the expected test score. Unlike the chosen candidate's own score, this
number has not been used to pick the winner, so the selection's optimism (the winner's curse of choosing among
many candidates) is not in it. One choice still sees every block: each probe's C (per layer, from the probes'
own fold scores, before any candidate is scored).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ._metrics import score
from .aggregate import Candidate, Configuration, Evaluation
from .extract import parse_key
from .heads import HEAD_FAMILIES

__all__ = ["FLOOR_SES", "Selector", "score_blocks", "choose_one_se", "leader_on", "leave_one_block_out",
           "held_out_scores", "mean_and_se", "with_sampling_floor", "embedding_candidates", "FloorTest", "floor_test",
           "embedding_floor", "expected_score", "configuration_rows"]

#: The embedding floor gives way to the search's choice only where it beats the embedding by more than this many
#: standard errors of their paired per-block differences (``floor_test``): a one-sided test at about 2.3 %. Why two and
#: not one: the choice's honest scores still carry one selection made on every block (each probe's C), and with few
#: texts that is worth points. Measured (MR, 5 seeds per cell, 8-64 texts per class): choices that beat the embedding by
#: 1.6-2.2 standard errors (12-22 points) scored 4-7 points below it on the test split, and with one standard error
#: STC's mean fell 1.7 points below the embedding's at 16 and at 32 per class (with two, and the embedding readout
#: scored at every C, level with it: ``benchmarks/README.md``, "Few labels"). The price: where the last layer carries
#: nothing and the useful neurons lead it by less than two errors, the model is that useless embedding (a planted store
#: of 140 texts, one seed of three: test 0.50 against 0.60; tests/test_selection.py), and where the folds call a tie
#: that the test split does not (BBC News, 1,701 articles, margins -0.2 to +0.8 points: on six test splits the
#: search's own choices scored 0.0-2.4 points above the embedding kept, 0.5 on average over five random ones;
#: benchmarks/README.md, "Few labels").
FLOOR_SES = 2.0


def score_blocks(evaluations: Sequence[Evaluation], y_eval: np.ndarray, blocks: Sequence[np.ndarray],
                 metric: str) -> np.ndarray:
    """(n_candidates, n_blocks) scores of every candidate's held-out predictions on each block."""
    return np.array([[score(y_eval[block], e.predictions[block], metric) for block in blocks]
                     for e in evaluations]).reshape(len(evaluations), len(blocks))


def _penalty(candidate: Candidate) -> float:
    """The candidate's C for ordering by simplicity; a head that chooses its own penalty (multi-label: C None)
    orders as equal."""
    return 0.0 if candidate.C is None else candidate.C


def _simplicity(evaluation: Evaluation) -> tuple:
    candidate = evaluation.candidate
    return HEAD_FAMILIES.index(candidate.head), evaluation.mean_n_features, candidate.exit_layer, _penalty(candidate)


def simplifies(candidate: Candidate, leader: Candidate) -> bool:
    """Whether ``candidate`` lies on ``leader``'s path towards simpler models (itself included).

    A linear head is simpler than an MLP head on the same or fewer neurons, whatever either's C (C is compared
    within one head family only): so an MLP leader's path holds the linear heads its neurons simplify to, and
    the MLP is chosen only when none of them is within one standard error of it."""
    if (candidate.kind, candidate.representations, candidate.poolings) != \
            (leader.kind, leader.representations, leader.poolings):
        return False
    simpler_head = HEAD_FAMILIES.index(candidate.head) - HEAD_FAMILIES.index(leader.head)
    if simpler_head > 0:
        return False
    weaker_penalty = simpler_head < 0 or _penalty(candidate) <= _penalty(leader)
    if candidate.kind != "sparse":
        return candidate.dense_key == leader.dense_key and weaker_penalty
    return candidate.eta <= leader.eta and candidate.exit_layer <= leader.exit_layer and weaker_penalty


class Selector:
    """Chooses among evaluated candidates: ``rule="one_se"`` (cross-validation) or ``"best"`` (one split).

    ``y_eval`` are the labels of the held-out rows in evaluation order; ``blocks`` cut them into folds (or
    validation blocks). ``"best"`` ranks by the score of all held-out rows together, exactly the paper's validation
    score; ``"one_se"`` by the mean over blocks.

    Repeated folds (``repeats`` > 1): the blocks are the folds of each partition, partition after partition, and
    every text is held out once per partition. The ranking is the mean over every block; a standard error is that
    of one partition's mean (``per_repeat`` blocks), since the partitions hold out the same texts (an honest
    upper bound: the repeats cannot make the texts more); and a choice made "without block k" reads only the other
    blocks of its partition (``without``), since every block of another partition holds some of block k's texts."""

    def __init__(self, y_eval: np.ndarray, blocks: Sequence[np.ndarray], metric: str, rule: str, repeats: int = 1):
        if rule not in ("one_se", "best"):
            raise ValueError(f"rule must be 'one_se' or 'best', got {rule!r}")
        if repeats < 1 or len(blocks) % repeats:
            raise ValueError(f"{len(blocks)} blocks cannot be {repeats} repeats of the same folds")
        self.y_eval, self.blocks, self.metric, self.rule = y_eval, list(blocks), metric, rule
        self.repeats = repeats
        self.per_repeat = len(self.blocks) // repeats

    def without(self, k: int) -> np.ndarray:
        """The blocks a choice made without block ``k`` may read: every other block of its partition."""
        first = (k // self.per_repeat) * self.per_repeat
        same = np.arange(first, first + self.per_repeat)
        return same[same != k]

    def scores(self, evaluations: Sequence[Evaluation]) -> np.ndarray:
        """Each candidate's ranking score: the pooled score ("best") or the mean over blocks ("one_se")."""
        if self.rule == "best":
            return np.array([score(self.y_eval, e.predictions, self.metric) for e in evaluations])
        return score_blocks(evaluations, self.y_eval, self.blocks, self.metric).mean(axis=1)

    def leader(self, evaluations: Sequence[Evaluation]) -> int:
        """The best-scoring candidate (ties: the simplest), to be tuned further."""
        return _best(self.scores(evaluations), evaluations)

    def choose(self, evaluations: Sequence[Evaluation]) -> int:
        """The final choice: the leader ("best"), or the simplest within one standard error of it ("one_se")."""
        if self.rule == "best":
            return self.leader(evaluations)
        return choose_one_se(score_blocks(evaluations, self.y_eval, self.blocks, self.metric), evaluations,
                             self.per_repeat)


def _best(means: np.ndarray, evaluations: Sequence[Evaluation]) -> int:
    """Index of the best mean (ties: the simplest)."""
    return min(range(len(means)), key=lambda i: (-means[i], *_simplicity(evaluations[i])))


def choose_one_se(block_scores: np.ndarray, evaluations: Sequence[Evaluation], n_independent: int | None = None) -> int:
    """Index of the simplest candidate on the best one's path whose mean block score is within one paired
    standard error of the best (see the module docstring). The error's divisor is the square root of
    ``n_independent`` blocks (default: every block; repeated folds: one partition's, see ``Selector``)."""
    means = block_scores.mean(axis=1)
    simplicity = [_simplicity(e) for e in evaluations]
    best = _best(means, evaluations)
    differences = block_scores[best] - block_scores
    n_blocks = block_scores.shape[1]
    se = (differences.std(axis=1, ddof=1) / math.sqrt(n_independent or n_blocks) if n_blocks > 1
          else np.zeros(len(means)))
    leader = evaluations[best].candidate
    eligible = [i for i in range(len(means)) if means[i] >= means[best] - se[i] - 1e-12
                and simplifies(evaluations[i].candidate, leader)]
    return min(eligible, key=lambda i: (*simplicity[i], -means[i]))


def _choose(block_scores: np.ndarray, evaluations: Sequence[Evaluation], rule: str) -> int:
    if rule == "one_se" and block_scores.shape[1] > 1:
        return choose_one_se(block_scores, evaluations)
    return _best(block_scores.mean(axis=1), evaluations)


def leader_on(block_scores: np.ndarray, evaluations: Sequence[Evaluation], columns: np.ndarray) -> int:
    """Index of the best candidate by its mean over the blocks ``columns`` (ties: the simplest): a stage-1 leader
    as the search would have named it without a block (``columns = Selector.without(k)``)."""
    return _best(block_scores[:, columns].mean(axis=1), evaluations)


def leave_one_block_out(selector: Selector,
                        per_block: Sequence[tuple[Sequence[Evaluation], np.ndarray]]) -> tuple[float, float]:
    """(mean, standard error) over blocks k of the score on block k of the candidate the rule chooses without it.

    ``per_block[k]`` holds the candidates the choice without block k is made among and their (n_candidates,
    n_blocks) block scores: the same table for every block, or (``stc.search.TwoStageSearch.expected_score``) the
    search replayed without block k. The choice without block k reads ``selector.without(k)``."""
    return mean_and_se(held_out_scores(selector, per_block), selector.per_repeat)


def held_out_scores(selector: Selector, per_block: Sequence[tuple[Sequence[Evaluation], np.ndarray]]) -> np.ndarray:
    """Per block k, the score on block k of the candidate the rule chooses without it (see ``leave_one_block_out``)."""
    return np.array([scores[_choose(scores[:, selector.without(k)], candidates, selector.rule), k]
                     for k, (candidates, scores) in enumerate(per_block)])


def mean_and_se(values: np.ndarray, n_independent: int | None = None) -> tuple[float, float]:
    """(mean, standard error of the mean) of per-block scores; the error is NaN for a single block. The error's
    divisor is the square root of ``n_independent`` blocks (default: every value; see ``Selector``)."""
    values = np.asarray(values, dtype=np.float64)
    se = (float(values.std(ddof=1) / math.sqrt(n_independent or len(values))) if len(values) > 1
          else float("nan"))
    return float(values.mean()), se


def with_sampling_floor(estimate: tuple[float, float], n_texts: int) -> tuple[float, float]:
    """``estimate`` (mean, standard error) with the error raised to at least sqrt(s (1 - s) / n): the binomial
    error of a score s measured on ``n_texts`` held-out texts, which no estimate from them can beat.

    The spread of a few block scores understates it where the blocks are few and small: 6 texts in 3 folds of
    one text per class score 0.5, 0.5 and 0.5, a spread of 0, though 6 texts cannot tell 0.5 from 0.9. It also
    stands in for the error where there is no spread (one block: NaN). For one label per text (accuracy, and as
    a lower bound for macro-F1, whose rarer classes are measured on fewer texts still); label sets' scores pool
    the labels of each text and are not proportions of texts, so their estimate keeps the blocks' error."""
    mean, se = estimate
    share = min(max(mean, 0.0), 1.0)
    floor = math.sqrt(share * (1.0 - share) / n_texts) if n_texts else math.nan
    return mean, (floor if math.isnan(se) else max(se, floor))


def embedding_candidates(evaluations: Sequence[Evaluation]) -> list[int]:
    """Indices of the embedding readout among ``evaluations`` (every neuron of the deepest dense layer's
    mean-pooled hidden state, or its first pooling when mean was not searched; a linear head at any C); empty when
    no dense readout was searched."""
    dense = [(i, parse_key(e.candidate.dense_key)) for i, e in enumerate(evaluations)
             if e.candidate.kind == "dense" and e.candidate.head == "linear"]
    if not dense:
        return []
    deepest = max(layer for _, (_, layer, _) in dense)
    poolings = sorted({pooling for _, (_, layer, pooling) in dense if layer == deepest})
    pooling = "mean" if "mean" in poolings else poolings[0]
    return [i for i, (_, layer, p) in dense if layer == deepest and p == pooling]


@dataclass(frozen=True)
class FloorTest:
    """The embedding floor's comparison: the embedding readout's index (at its one-SE C) in the table, and the mean and
    standard error of the paired per-block differences, the search's choice (its honest scores) minus it."""

    embedding: int
    margin: float
    margin_se: float

    @property
    def holds(self) -> bool:
        """Whether the embedding stays the model: the choice does not beat it by more than ``FLOOR_SES`` standard
        errors."""
        return self.margin <= FLOOR_SES * self.margin_se + 1e-12


def floor_test(selector: Selector, evaluations: Sequence[Evaluation], chosen: int,
               held_out: np.ndarray) -> FloorTest | None:
    """The search's choice against the embedding readout (see ``embedding_floor``); None where there is no floor:
    another rule than one-standard-error, no dense readout searched, the choice the embedding itself, one block.

    The choice's scores are its honest per-block scores (``held_out``: each block scored by the candidate the search
    chooses without it, the selection's optimism left out)."""
    embedding = embedding_candidates(evaluations)
    if selector.rule != "one_se" or not embedding or chosen in embedding or len(held_out) < 2:
        return None
    readouts = [evaluations[i] for i in embedding]
    block_scores = score_blocks(readouts, selector.y_eval, selector.blocks, selector.metric)
    floor = choose_one_se(block_scores, readouts, selector.per_repeat)  # its C as the search chooses any C
    margin, se = mean_and_se(np.asarray(held_out) - block_scores[floor], selector.per_repeat)
    return FloorTest(embedding[floor], margin, se)


def embedding_floor(selector: Selector, evaluations: Sequence[Evaluation], chosen: int,
                    held_out: np.ndarray) -> int | None:
    """The embedding readout's index (its one-SE C) when the search's choice does not beat it beyond noise, else None.

    Beyond noise: the choice's honest per-block scores beat the embedding's block scores by more than ``FLOOR_SES``
    standard errors of their paired differences (``floor_test``). Only with the one-standard-error rule and dense
    readouts searched."""
    test = floor_test(selector, evaluations, chosen, held_out)
    return test.embedding if test is not None and test.holds else None


def expected_score(selector: Selector, evaluations: Sequence[Evaluation]) -> tuple[float, float]:
    """(mean, standard error) over blocks of the score of the candidate chosen among ``evaluations`` without each
    block: the estimate of a one-stage search (a two-stage search replays its stages: ``stc.search``)."""
    block_scores = score_blocks(evaluations, selector.y_eval, selector.blocks, selector.metric)
    return leave_one_block_out(selector, [(evaluations, block_scores)] * block_scores.shape[1])


def configuration_rows(selector: Selector, evaluations: Sequence[Evaluation]) -> list[Configuration]:
    """Every evaluation as a Configuration with its ranking score, standard error and per-block scores."""
    block_scores = score_blocks(evaluations, selector.y_eval, selector.blocks, selector.metric)
    ranking = selector.scores(evaluations)
    rows = []
    for e, blocks, value in zip(evaluations, block_scores, ranking):
        c = e.candidate
        se = float(blocks.std(ddof=1) / math.sqrt(selector.per_repeat)) if len(blocks) > 1 else None
        n_features = int(e.mean_n_features) if float(e.mean_n_features).is_integer() else round(e.mean_n_features, 1)
        rows.append(Configuration(c.representations, c.poolings, c.eta, c.exit_layer, c.C, n_features,
                                  float(value), c.stage, c.kind, c.dense_key, se, tuple(float(b) for b in blocks),
                                  c.head))
    return rows
