"""The two-stage search over candidate readouts, and its estimate: one object from the first stage to the replay.

The full product (representations × poolings × η × exit layer × C, and the dense layers) is thousands of fits, so
``TwoStageSearch.run`` tries in stage 1 every representation set × pooling set × η at full depth with one C (for
label sets, whose extra Cs cost little, a coarse grid of Cs: ``SearchSpace.first_Cs``, and every array together
only: ``SearchSpace.over``), and every dense layer; in stage 2, around the stage-1 leaders (one per kind, named by
the selection rule), every exit layer × C of the sparse leader (for label sets, the earlier exits at the leader's C
and its own exit at the Cs next to it: ``SearchSpace.second_Cs``), every C of the dense leader, and the sparse
leader's Cs of the two together (hybrid). The rule then chooses among every candidate of both stages
(``stc.selection.Selector``). With ``SearchSpace.mlp_Cs``, a third stage fits an MLP head (``stc.heads.MLPHead``) at
each of those Cs on the neurons of the best candidate of stages 1 and 2 (the leader, whose path the rule's choice
lies on), and the rule chooses among all three stages: a linear head is simpler than an MLP on the same or fewer
neurons, so an MLP is chosen only where it beats every linear head on its path by more than one standard error
(``stc.selection.simplifies``). Why the leader's neurons and not the rule's choice's: the choice is the simplest
linear readout within noise of the best, and may have dropped neurons that only a nonlinear head can use (a planted
XOR of two neurons: the choice kept one of them).

``TwoStageSearch.expected_score`` estimates the chosen model's test score with the selection's optimism left out:
for each block of held-out rows, the search is replayed from its first stage without that block (its leaders named
on the other blocks (of its partition, when the folds are repeated: ``Selector.without``), stage 2 run around
them when they differ from the search's own), the rule chooses among stage
1 and that stage 2, and the choice is scored on the block (``stc.selection.leave_one_block_out``; the module
docstring of ``stc.selection`` says why). The search keeps every stage-2 evaluation it made, so a replay around
leaders it has seen costs nothing. The third stage is replayed too: around the choice among stage 1 and that stage
2 without the block (the MLPs around a leader the search has seen are not fitted again).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from .aggregate import READOUT_KINDS, Candidate, Evaluation
from .extract import all_keys, parse_key
from .selection import FloorTest, Selector, floor_test, held_out_scores, leader_on, mean_and_se, score_blocks

__all__ = ["SearchSpace", "SearchOutcome", "TwoStageSearch"]

#: What the search asks to have fitted and scored: candidates (and a progress bar's name) to their evaluations,
#: in order, leaving out any that keep no neuron or repeat an earlier one (``stc.aggregate.CandidateEvaluator``).
Evaluate = Callable[[Sequence[Candidate], str], list[Evaluation]]


@dataclass(frozen=True)
class SearchSpace:
    """The settings the search tries: representation and pooling sets, η, exit layers and final Cs, the dense
    layers, the readout kinds (sparse, dense, hybrid) it may build, and the Cs of the MLP heads of its third stage
    (none: no third stage)."""

    representation_sets: Sequence[tuple[str, ...]]
    pooling_sets: Sequence[tuple[str, ...]]
    etas: Sequence[float]
    exit_layers: Sequence[int]
    Cs: Sequence[float]
    dense_keys: Sequence[str] = ()
    kinds: tuple[str, ...] = READOUT_KINDS
    mlp_Cs: Sequence[float] = ()
    stage_one_Cs: Sequence[float] | None = None  # None: the lower middle C of the grid alone (``middle_C``)

    @classmethod
    def over(cls, representations: Sequence[str], poolings: Sequence[str], num_layers: int, *,
             etas: Sequence[float], Cs: Sequence[float], kinds: Sequence[str] = READOUT_KINDS,
             mlp_Cs: Sequence[float] = (), stage_one_Cs: Sequence[float] | None = None,
             array_subsets: bool = True) -> SearchSpace:
        """Every representation and pooling alone and (when several) all together (only together without
        ``array_subsets``), every layer as an exit, and as dense layers every pooled hidden state but the
        embeddings' (layer 0), when dense readouts are searched.

        Label sets search the arrays together only (``array_subsets=False``): one readout serves every label, and a
        label that needs the FFN neurons' max pooling is not served by a readout of the hidden states' mean; the
        readout's width is still searched, by η. On films (MiniLM, 21 genres, 3 seeds; ``benchmarks/README.md``,
        "Multi-label (films)") the subsets' eleven chains of nested readouts were three fifths of stage 1's ridge
        time on all 11,961 texts; without them the search chose the same models on all of films and on two seeds
        of three at 2,000 texts, and a better one on the third (48.1 against 47.2 micro-F1 on the test split),
        where both representations' max pooling alone had led stage 1 within a standard error."""
        representation_sets = [(r,) for r in representations] if array_subsets or len(representations) == 1 else []
        if len(representations) > 1:
            representation_sets.append(tuple(representations))
        pooling_sets = ([(p,) for p in poolings] if array_subsets or len(poolings) == 1 else []) + (
            [tuple(poolings)] if len(poolings) > 1 else [])
        dense_keys = ([key for key in all_keys(num_layers, ("hidden",), poolings) if parse_key(key)[1] > 0]
                      if "dense" in kinds and "hidden" in representations else [])
        return cls(representation_sets, pooling_sets, tuple(etas), range(1, num_layers + 1), tuple(Cs), dense_keys,
                   tuple(kinds), tuple(mlp_Cs), None if stage_one_Cs is None else tuple(stage_one_Cs))

    @property
    def middle_C(self) -> float | None:
        """Stage 1's C: the lower middle of the grid (0.1 of the default grid)."""
        # Stage 1 compares feature sets of very different sizes at one C; a weak penalty (large C) would favour the
        # small ones and converge slowest, so it takes the lower middle of the grid.
        return sorted(self.Cs, key=lambda C: -1.0 if C is None else C)[(len(self.Cs) - 1) // 2]

    @property
    def embedding_key(self) -> str | None:
        """The embedding readout's array among the dense layers: the deepest layer's mean-pooled hidden state (its
        first pooling without a mean), as ``stc.selection.embedding_candidates`` names it; None without dense
        layers."""
        if not self.dense_keys:
            return None
        deepest = max(parse_key(key)[1] for key in self.dense_keys)
        last = sorted((parse_key(key)[2], key) for key in self.dense_keys if parse_key(key)[1] == deepest)
        return next((key for pooling, key in last if pooling == "mean"), last[0][1])

    @property
    def first_Cs(self) -> tuple[float | None, ...]:
        """Stage 1's Cs: ``stage_one_Cs``, or the lower middle C of the grid alone (``middle_C``).

        Several where a C costs little more than one: a label-set head factorises one Gram matrix per C for every
        nested set of columns (``stc._ridge``), so stage 1 of a multi-label search tries a coarse grid
        (``stc.head.MULTILABEL_STAGE_ONE_CS``) and lets every feature set meet a penalty that suits its width."""
        return (self.middle_C,) if self.stage_one_Cs is None else tuple(self.stage_one_Cs)

    def stage_one(self) -> tuple[list[Candidate], list[Candidate]]:
        """(sparse, dense) candidates of stage 1, at full depth and each C of ``first_Cs``."""
        deepest = max(self.exit_layers)
        sparse = ([Candidate("sparse", r, p, eta, deepest, C, 1)
                   for r in self.representation_sets for p in self.pooling_sets for eta in self.etas
                   for C in self.first_Cs]
                  if "sparse" in self.kinds else [])
        dense = [Candidate("dense", (representation,), (pooling,), None, layer, C, 1, key)
                 for key, (representation, layer, pooling) in zip(self.dense_keys, map(parse_key, self.dense_keys))
                 for C in self.first_Cs]
        return sparse, dense

    def second_Cs(self, C: float | None) -> tuple[float | None, ...]:
        """Stage 2's Cs around a stage-1 leader at ``C``: the whole grid where stage 1 tried one C; where it tried a
        coarse grid (``stage_one_Cs``: label sets), ``C`` and its two neighbours in the whole grid, coarse to fine.

        A label-set head's cost is its factorisations, one per C and set of columns wider than the rows: on 6,000
        films texts (4,000 rows a fold) stage 2's sparse chain of six exit layers at the ten Cs was 60 of them, and a
        ridge's held-out score is unimodal in its penalty (films: benchmarks/README.md, "Multi-label (films)")."""
        if self.stage_one_Cs is None or C not in self.Cs:
            return tuple(self.Cs)
        grid = sorted(self.Cs)
        at = grid.index(C)
        return tuple(grid[max(at - 1, 0):at + 2])

    def stage_two(self, sparse_leader: Candidate | None, dense_leader: Candidate | None) -> list[Candidate]:
        """Stage 2 around the stage-1 leaders: every exit layer × C of the sparse leader (but the leader itself), every
        other C of the dense leader and of the embedding readout, and the sparse leader's Cs of the two leaders
        together (hybrid, when searched). Where stage 1 tried a coarse grid of Cs (label sets), the Cs beside the
        leader's (``second_Cs``) refine its own exit layer and the hybrid, and the earlier exits are read at the
        leader's C.

        Why the earlier exits at one C for label sets: each set of columns wider than the rows is one factorisation
        of the rows' Gram matrix per C (``stc._ridge``), and on all of films (8,000 rows a fold) the exits at three
        Cs were 9 of stage 2's 12 factorisations a fold, stage 2 more than half of the search.

        The embedding readout at every C, whichever dense layer leads: it is the floor the search's choice is held
        to (``stc.selection.embedding_floor``), and a floor at stage 1's C alone is not the embedding baseline a
        user would fit (its C chosen by cross-validation, as ``LogisticRegressionCV`` does); with few texts the
        two differed by 1-2 points (MR, 16 texts per class: C = 0.01 against stage 1's 0.1)."""
        second = []
        if sparse_leader:
            leader, refined = sparse_leader, self.second_Cs(sparse_leader.C)
            second = [Candidate("sparse", leader.representations, leader.poolings, leader.eta, k, C, 2)
                      for k in self.exit_layers
                      for C in (refined if self.stage_one_Cs is None or k == leader.exit_layer else (leader.C,))
                      if (k, C) != (leader.exit_layer, leader.C)]  # the leader itself is stage 1's
        if dense_leader:
            second += [replace(dense_leader, C=C, stage=2) for C in self.Cs if C not in self.first_Cs]
        embedding = self.embedding_key
        if embedding is not None and (dense_leader is None or dense_leader.dense_key != embedding):
            representation, layer, pooling = parse_key(embedding)
            second += [Candidate("dense", (representation,), (pooling,), None, layer, C, 2, embedding)
                       for C in self.Cs if C not in self.first_Cs]
        if sparse_leader and dense_leader and "hybrid" in self.kinds:  # the embedding plus the neurons adding most
            second += [Candidate("hybrid", sparse_leader.representations, sparse_leader.poolings, sparse_leader.eta,
                                 max(sparse_leader.exit_layer, dense_leader.exit_layer), C, 2, dense_leader.dense_key)
                       for C in self.second_Cs(sparse_leader.C)]
        return second

    def stage_three(self, leader: Candidate) -> list[Candidate]:
        """Stage 3 on the neurons of the leader of stages 1 and 2: an MLP head at every C of ``mlp_Cs``."""
        return [replace(leader, head="mlp", C=C, stage=3) for C in self.mlp_Cs] if leader.head == "linear" else []


@dataclass(frozen=True)
class SearchOutcome:
    """The search's table (stage 1, then stage 2, in the order scored) and the index of the chosen candidate."""

    chosen: int
    table: list[Evaluation]

    @property
    def best(self) -> Evaluation:
        return self.table[self.chosen]


class TwoStageSearch:
    """The two-stage search over ``space``, its candidates evaluated by ``evaluate`` and chosen by ``selector``.

    ``run`` searches and chooses; ``expected_score`` (after ``run``) replays the search without each block of held-out
    rows. One instance is one search: it keeps the stage-2 evaluations it made for the replay."""

    def __init__(self, space: SearchSpace, evaluate: Evaluate, selector: Selector):
        self.space, self.evaluate, self.selector = space, evaluate, selector
        self._outcome: SearchOutcome | None = None
        self._stage_two: dict[Candidate, Evaluation] = {}  # every stage-2 and 3 evaluation made, by candidate
        self._tried: set[Candidate] = set()
        self._held_out: np.ndarray | None = None  # per block, the replayed choice's score (expected_score)

    def run(self) -> SearchOutcome:
        """Stage 1, stage 2 around its leaders, stage 3 (MLP heads) on the neurons of their leader, and the rule's
        choice among every stage."""
        sparse, dense = self.space.stage_one()
        first = self.evaluate(sparse, "search stage 1")
        first_dense = self.evaluate(dense, "search stage 1 (dense)")
        if not first and not first_dense:
            raise ValueError("every probe kept no neuron at every eta: the labels look unrelated to the activations "
                             "(or the probe C grid is too small)")
        sparse_leader = first[self.selector.leader(first)].candidate if first else None
        dense_leader = first_dense[self.selector.leader(first_dense)].candidate if first_dense else None
        second = self.evaluate(self.space.stage_two(sparse_leader, dense_leader), "search stage 2")
        self._stage_two = {e.candidate: e for e in second}
        self._tried = set(self._stage_two)
        table = first + first_dense + second
        if self.space.mlp_Cs:
            table += self._made(self.space.stage_three(table[self.selector.leader(table)].candidate),
                                "search stage 3 (MLP heads)")
        self._outcome = SearchOutcome(self.selector.choose(table), table)
        return self._outcome

    def expected_score(self) -> tuple[float, float]:
        """(mean, standard error) over blocks of the score on each block of the candidate the search, replayed
        from stage 1 without that block, chooses (see the module docstring)."""
        if self._outcome is None:
            raise RuntimeError("run the search before its estimate")
        table, selector = self._outcome.table, self.selector
        block_scores = score_blocks(table, selector.y_eval, selector.blocks, selector.metric)
        first = [i for i, e in enumerate(table) if e.candidate.stage == 1]
        per_block = []
        for k in range(block_scores.shape[1]):
            others = selector.without(k)  # the other blocks (of its partition, with repeated folds)
            leaders = {}
            for kind in ("sparse", "dense"):
                pool = [i for i in first if table[i].candidate.kind == kind]
                if pool:
                    leaders[kind] = table[pool[leader_on(block_scores[pool], [table[i] for i in pool],
                                                         others)]].candidate
            candidates = [table[i] for i in first] + self._around(leaders.get("sparse"), leaders.get("dense"))
            scores = np.vstack([block_scores[first], score_blocks(candidates[len(first):], selector.y_eval,
                                                                  selector.blocks, selector.metric)])
            if self.space.mlp_Cs:
                third = self._made(self.space.stage_three(candidates[leader_on(scores, candidates, others)].candidate),
                                   "estimate: stage 3 around other leaders")
                candidates += third
                scores = np.vstack([scores, score_blocks(third, selector.y_eval, selector.blocks, selector.metric)])
            per_block.append((candidates, scores))
        self._held_out = held_out_scores(selector, per_block)
        return mean_and_se(self._held_out, selector.per_repeat)

    def floor(self) -> FloorTest | None:
        """After ``expected_score``: the search's choice against the embedding readout (``stc.selection.floor_test``:
        the embedding's index in the table, the margin and its standard error; ``holds`` when the choice does not beat
        it beyond noise), or None where there is no floor."""
        if self._held_out is None:
            raise RuntimeError("the floor compares the estimate's per-block scores: run expected_score first")
        return floor_test(self.selector, self._outcome.table, self._outcome.chosen, self._held_out)

    def block_estimate(self, index: int) -> tuple[float, float]:
        """(mean, standard error) of one candidate's block scores: the estimate of a candidate chosen without a
        search among others (the embedding floor's)."""
        selector = self.selector
        return mean_and_se(score_blocks([self._outcome.table[index]], selector.y_eval, selector.blocks,
                                        selector.metric)[0], selector.per_repeat)

    def _around(self, sparse_leader: Candidate | None, dense_leader: Candidate | None) -> list[Evaluation]:
        """Stage 2 around these leaders, evaluating only the candidates not tried before."""
        return self._made(self.space.stage_two(sparse_leader, dense_leader), "estimate: stage 2 around other leaders")

    def _made(self, wanted: list[Candidate], desc: str) -> list[Evaluation]:
        """The evaluations of stage-2 or 3 candidates ``wanted`` (those that keep a neuron), evaluating only the
        ones not tried before."""
        missing = [c for c in wanted if c not in self._tried]
        if missing:
            self._tried.update(missing)
            self._stage_two.update((e.candidate, e) for e in self.evaluate(missing, desc))
        return [self._stage_two[c] for c in wanted if c in self._stage_two]
