"""Protected-term pairs: the built-in binary gender list and user lists (`--pairs FILE`).

A pair list becomes a `Substitution`: every term maps to its counterpart, in both directions. Terms are
single words, matched case-insensitively as whole words (see fednlp.fairness.counterfactual).

The built-in list follows the word-swap lists of counterfactual data augmentation (Lu et al., "Gender Bias in
Neural Natural Language Processing", 2018; Zhao et al., "Gender Bias in Coreference Resolution", NAACL 2018),
limited to words whose counterpart is unambiguous, plus the pronouns. English has two pronoun forms with two
counterparts each:

- `her` is the object form (-> `him`: "I told her") or the possessive determiner (-> `his`: "her book");
- `his` is the possessive determiner (-> `her`: "his book") or the possessive pronoun (-> `hers`: "it is his").

Without a part-of-speech tagger (none works offline here), the word after it decides: when the next word
could start a noun phrase (any word that is not in `NOT_A_NOUN_PHRASE`), it is the determiner (`his`, `her`);
when the text ends, punctuation follows, or the next word is a function word (a determiner, preposition,
conjunction, pronoun, auxiliary or particle: "gave her a", "to her.", "her and"), it is the pronoun (`him`,
`hers`). Errors are rare and both readings keep the gender swap, which is what the evaluation measures.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from fednlp.errors import UserError

#: (male, female) word pairs; each pair is used in both directions, plural and singular listed separately.
GENDER_PAIRS: tuple[tuple[str, str], ...] = (
    ("he", "she"), ("him", "her"), ("his", "her"), ("his", "hers"), ("himself", "herself"),
    ("man", "woman"), ("men", "women"), ("boy", "girl"), ("boys", "girls"),
    ("gentleman", "lady"), ("gentlemen", "ladies"), ("sir", "madam"), ("mr", "mrs"),
    ("father", "mother"), ("fathers", "mothers"), ("dad", "mom"), ("dads", "moms"), ("daddy", "mommy"),
    ("son", "daughter"), ("sons", "daughters"), ("brother", "sister"), ("brothers", "sisters"),
    ("husband", "wife"), ("husbands", "wives"), ("boyfriend", "girlfriend"), ("boyfriends", "girlfriends"),
    ("uncle", "aunt"), ("uncles", "aunts"), ("nephew", "niece"), ("nephews", "nieces"),
    ("grandfather", "grandmother"), ("grandfathers", "grandmothers"), ("grandson", "granddaughter"),
    ("grandsons", "granddaughters"), ("stepfather", "stepmother"), ("stepson", "stepdaughter"),
    ("groom", "bride"), ("fiance", "fiancee"), ("king", "queen"), ("kings", "queens"),
    ("prince", "princess"), ("princes", "princesses"), ("male", "female"), ("males", "females"),
    ("masculine", "feminine"), ("actor", "actress"), ("actors", "actresses"), ("waiter", "waitress"),
    ("hero", "heroine"), ("heroes", "heroines"), ("monk", "nun"), ("monks", "nuns"),
    ("spokesman", "spokeswoman"), ("chairman", "chairwoman"), ("businessman", "businesswoman"),
    ("businessmen", "businesswomen"), ("congressman", "congresswoman"), ("boyhood", "girlhood"),
)


@dataclass(frozen=True)
class ByNextWord:
    """A term with two counterparts, chosen by the word after it (see the module docstring)."""

    before_noun: str  # when a noun phrase follows: the determiner reading
    otherwise: str  # end of text, punctuation or a function word follows: the pronoun reading


#: The resolution of the built-in list's two ambiguous terms.
GENDER_AMBIGUOUS: dict[str, ByNextWord] = {
    "her": ByNextWord(before_noun="his", otherwise="him"),
    "his": ByNextWord(before_noun="her", otherwise="hers"),
}

#: Words that do not start a noun phrase after `her`/`his` (so the pronoun reading is meant there).
NOT_A_NOUN_PHRASE: frozenset[str] = frozenset("""
    a an the this that these those some any each every all both either neither no
    to in on at for with from by about of into onto over under after before up down out off through as than
    like back away around again too also then there here now just only even
    and or but nor so yet because if when while where whether until unless though although since
    i you he she it we they me him her us them my your our their its who whom whose which what myself yourself
    is was are were be been being am will would can could shall should may might must has have had do does did
    not don't didn't won't can't isn't wasn't
""".split())


@dataclass(frozen=True)
class Substitution:
    """term -> counterpart (lower case), plus the terms whose counterpart depends on the next word."""

    counterparts: dict[str, str]
    by_next_word: dict[str, ByNextWord] = field(default_factory=dict)
    source: str = "builtin:gender"

    @property
    def terms(self) -> list[str]:
        return sorted(set(self.counterparts) | set(self.by_next_word))

    def counterpart(self, term: str, next_word: str | None) -> str:
        """The counterpart of lower-case `term`; `next_word` is the following word (lower case) or None."""
        rule = self.by_next_word.get(term)
        if rule is None:
            return self.counterparts[term]
        if next_word is None or next_word in NOT_A_NOUN_PHRASE:
            return rule.otherwise
        return rule.before_noun


def gender_substitution() -> Substitution:
    """The built-in binary gender list, both directions, with `her`/`his` resolved by the next word."""
    counterparts = _both_directions(GENDER_PAIRS, ambiguous=set(GENDER_AMBIGUOUS))
    return Substitution(counterparts=counterparts, by_next_word=dict(GENDER_AMBIGUOUS), source="builtin:gender")


def _both_directions(pairs: tuple[tuple[str, str], ...], ambiguous: set[str]) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for a, b in pairs:
        for term, other in ((a, b), (b, a)):
            if term in ambiguous:
                continue
            if mapping.get(term, other) != other:
                raise ValueError(f"built-in pair list maps {term!r} to both {mapping[term]!r} and {other!r}")
            mapping[term] = other
    return mapping


_WORD = re.compile(r"^[^\W_](?:[\w'-]*[^\W_])?$")
_SEPARATOR = re.compile(r"[\t,]|\s+")


def read_pairs_file(path: str | os.PathLike) -> Substitution:
    """A two-column file: one pair of words a line, separated by a tab, a comma or spaces; blank lines and
    lines starting with # are skipped. Each pair is used in both directions; a word may have one counterpart."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--pairs {path} does not exist (expected a two-column file of word pairs)")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise UserError(f"--pairs {path} is not UTF-8 text (expected a two-column file of word pairs)") from None
    counterparts: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        words = [w for w in _SEPARATOR.split(text) if w]
        where = f"--pairs {path}:{number}"
        if len(words) != 2 or not all(_WORD.match(w) for w in words):
            raise UserError(f"{where}: expected two words separated by a tab, comma or space, got {text!r}")
        a, b = (w.lower() for w in words)
        if a == b:
            raise UserError(f"{where}: {words[0]!r} is paired with itself")
        for term, other in ((a, b), (b, a)):
            if counterparts.get(term, other) != other:
                raise UserError(f"{where}: {term!r} already has the counterpart {counterparts[term]!r}; "
                                "a word may have one counterpart")
            counterparts[term] = other
    if not counterparts:
        raise UserError(f"--pairs {path} holds no word pairs (expected a two-column file of word pairs)")
    return Substitution(counterparts=counterparts, source=str(path))


def load_substitution(pairs_file: str | os.PathLike | None) -> Substitution:
    return gender_substitution() if pairs_file is None else read_pairs_file(pairs_file)
