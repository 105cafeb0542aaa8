"""Protected-term pairs: the built-in binary gender list and user lists (`--pairs FILE`).

A pair list becomes a `Substitution`: every term maps to its counterpart, in both directions. Terms are
single words, matched case-insensitively as whole words (see fednlp.fairness.counterfactual).

The built-in list follows the word-swap lists of counterfactual data augmentation (Lu et al., "Gender Bias in
Neural Natural Language Processing", 2018; Zhao et al., "Gender Bias in Coreference Resolution", NAACL 2018),
limited to words whose counterpart is unambiguous, plus the pronouns. A male word may have several female
counterparts (mr: mrs, ms; dad: mom, mum; sir: madam, ma'am): each female word maps back to it, and it maps
to the first one listed. `her` and `his` have two counterparts each, chosen by the words around them
(fednlp/fairness/pronouns.py: `her` -> `him` or `his`, `his` -> `her` or `hers`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from fednlp.errors import UserError
from fednlp.fairness.pronouns import Context, reads_as_pronoun

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
    # Female words whose male counterpart already has one (they map back to it; it keeps its first).
    ("mr", "ms"), ("dad", "mum"), ("dads", "mums"), ("sir", "ma'am"),
    ("policeman", "policewoman"), ("policemen", "policewomen"), ("spokesmen", "spokeswomen"),
    ("chairmen", "chairwomen"), ("congressmen", "congresswomen"), ("salesman", "saleswoman"),
    ("salesmen", "saleswomen"), ("sportsman", "sportswoman"), ("sportsmen", "sportswomen"),
    ("fireman", "firewoman"), ("councilman", "councilwoman"), ("widower", "widow"), ("widowers", "widows"),
    ("grandpa", "grandma"), ("grandpas", "grandmas"), ("papa", "mama"), ("stepbrother", "stepsister"),
    ("stepsons", "stepdaughters"), ("stepfathers", "stepmothers"), ("godfather", "godmother"),
    ("godson", "goddaughter"), ("schoolboy", "schoolgirl"), ("schoolboys", "schoolgirls"),
    ("headmaster", "headmistress"), ("duke", "duchess"), ("dukes", "duchesses"), ("emperor", "empress"),
    ("steward", "stewardess"), ("stewards", "stewardesses"), ("waiters", "waitresses"), ("grooms", "brides"),
    ("fiances", "fiancees"), ("lad", "lass"), ("lads", "lasses"), ("patriarch", "matriarch"),
    ("manhood", "womanhood"), ("brotherhood", "sisterhood"), ("masculinity", "femininity"),
    ("paternal", "maternal"), ("paternity", "maternity"), ("granddad", "granny"),
)


@dataclass(frozen=True)
class ByReading:
    """A term with two counterparts, chosen by its reading (fednlp/fairness/pronouns.py)."""

    determiner: str  # the possessive determiner reading: "her book" -> "his book"
    pronoun: str  # the object or possessive pronoun reading: "saw her" -> "saw him", "is his" -> "is hers"


#: The built-in list's two terms whose counterpart depends on their reading.
GENDER_AMBIGUOUS: dict[str, ByReading] = {
    "her": ByReading(determiner="his", pronoun="him"),
    "his": ByReading(determiner="her", pronoun="hers"),
}


@dataclass(frozen=True)
class Substitution:
    """term -> counterpart (lower case), plus the terms whose counterpart depends on their reading."""

    counterparts: dict[str, str]
    by_context: dict[str, ByReading] = field(default_factory=dict)
    source: str = "builtin:gender"

    @property
    def terms(self) -> list[str]:
        return sorted(set(self.counterparts) | set(self.by_context))

    def counterpart(self, term: str, context: Context) -> str:
        """The counterpart of lower-case `term` in `context` (the words around it)."""
        rule = self.by_context.get(term)
        if rule is None:
            return self.counterparts[term]
        return rule.pronoun if reads_as_pronoun(term, context) else rule.determiner


def gender_substitution() -> Substitution:
    """The built-in binary gender list, both directions, with `her`/`his` resolved by their context."""
    counterparts = _both_directions(GENDER_PAIRS, ambiguous=set(GENDER_AMBIGUOUS))
    return Substitution(counterparts=counterparts, by_context=dict(GENDER_AMBIGUOUS), source="builtin:gender")


def _both_directions(pairs: tuple[tuple[str, str], ...], ambiguous: set[str]) -> dict[str, str]:
    """(male, female) pairs -> one mapping: the female word to the male, the male to its first female word."""
    mapping: dict[str, str] = {}
    for male, female in pairs:
        if female not in ambiguous:
            if mapping.get(female, male) != male:
                raise ValueError(f"built-in pair list maps {female!r} to both {mapping[female]!r} and {male!r}")
            mapping[female] = male
        if male not in ambiguous:
            mapping.setdefault(male, female)
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
