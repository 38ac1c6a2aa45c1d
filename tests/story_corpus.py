"""A small story corpus for the clustering tests, written in our own words for the fixtures.

Events (dates as reported publicly; wording ours): the 15 May 2017 US State Department briefing on a
crematorium at Sednaya and five syndicated copies of a wire story about it; the Syrian denial the
next day; a 2018 anniversary piece re-telling the briefing; a 2025 arrest of a former
military-police commander; a visit by the UN rights chief reported in English and Arabic; and
unrelated local news.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from stream.article import Article, parse_time
from stream.canonical_url import id_for_url
from stream.text import content_hash

VECTOR_T0 = datetime(2025, 3, 1, tzinfo=UTC)

CREMATORIUM = (
    "Washington, 15 May 2017. The US State Department said on Monday that the Syrian government built a "
    "crematorium inside the Sednaya military prison complex north of Damascus, and that it believes the "
    "building is used to get rid of the bodies of detainees killed there. Stuart Jones, the acting assistant "
    "secretary of state for Near Eastern affairs, showed reporters commercial satellite photographs of a "
    "structure he said had been altered for that purpose, with what appeared to be a chimney and a firewall. "
    "He said officials estimate that about fifty detainees a day are hanged at Sednaya. The accusation follows "
    "an Amnesty International report from February that estimated between 5,000 and 13,000 people were "
    "executed at the prison after the 2011 uprising. Jones said the crematorium looked like an attempt to "
    "hide the scale of the killings, and called on Russia and Iran to press Damascus."
)


def make_article(
    url: str,
    title: str,
    text: str,
    published: str,
    *,
    source: str = "",
    lang: str = "en",
    backfill: bool = False,
) -> Article:
    """An import-channel article as the crawlers or ``ingest`` would build it."""
    ident, canonical = id_for_url(url)
    when: datetime = parse_time(published)
    return Article(
        id=ident,
        url=url,
        canonical_url=canonical,
        source=source or canonical.split("/")[2],
        channel="import",
        backfill=backfill,
        lang=lang,
        title=title,
        text=text,
        authors=(),
        published=when,
        date_source="meta",
        discovered_at=when,
        fetched_at=when,
        content_sha256=content_hash(text),
        relevance=None,
    )


def vector_article(n: int, lang: str, vector: Iterable[float], *, start: datetime = VECTOR_T0) -> Article:
    """Undated article number ``n`` in ``lang`` that brings its own embedding (hand-built vectors: the
    stage never calls its model), discovered ``n`` minutes after ``start``."""
    seen = start + timedelta(minutes=n)
    return Article(
        id=f"a{n:04d}",
        url=f"https://example.org/{lang}/{n}",
        canonical_url=f"https://example.org/{lang}/{n}",
        source=f"outlet{n % 17}",
        channel="import",
        backfill=False,
        lang=lang,
        title=f"report {n}",
        text=f"report number {n} in {lang}",
        authors=(),
        published=None,
        date_source="none",
        discovered_at=seen,
        fetched_at=seen,
        content_sha256=f"{n:064x}",
        relevance=None,
        embedding=tuple(float(x) for x in vector),
    )


def crematorium_original() -> Article:
    return make_article(
        "https://wire.example/world/2017/05/15/us-syria-crematorium-sednaya",
        "US says Syria built a crematorium at Sednaya prison to hide mass killings",
        CREMATORIUM,
        "2017-05-15T16:05:00Z",
        source="wire",
    )


def crematorium_copies() -> list[Article]:
    """Five syndicated re-posts: other URLs and outlets, small edits (a word, a byline, a last line)."""
    edits = [
        ("daily-one", CREMATORIUM.replace("on Monday", "on Monday afternoon")),
        ("gazette", CREMATORIUM.replace("showed reporters", "showed journalists") + " (Reporting by wire staff.)"),
        ("courier", CREMATORIUM.replace("Washington, 15 May 2017. ", "WASHINGTON (15 May 2017) - ")),
        ("herald", CREMATORIUM.replace("called on Russia and Iran", "urged Russia and Iran")),
        ("observer", CREMATORIUM + " The Syrian government did not immediately comment."),
    ]
    titles = [
        "US says Syria built a crematorium at Sednaya prison to hide mass killings",
        "US: Syria built crematorium at Sednaya prison to hide killings",
        "US says Syria built crematorium at Sednaya prison",
        "Syria built a crematorium at Sednaya prison to hide mass killings, US says",
        "US accuses Syria of building crematorium at Sednaya prison",
    ]
    return [
        make_article(
            f"https://{source}.example/news/2017/05/15/sednaya-crematorium-{i}",
            title,
            text,
            f"2017-05-15T{17 + i:02d}:10:00Z",
            source=source,
        )
        for i, ((source, text), title) in enumerate(zip(edits, titles, strict=True))
    ]


def unrelated_regatta() -> Article:
    return make_article(
        "https://coastal-news.example/2017/05/16/harbour-regatta",
        "Harbour regatta draws record crowd despite strong winds",
        "More than two hundred sailing boats took part in the annual harbour regatta on Tuesday, the organisers "
        "said, a record for the event, which began in 1962. Strong winds in the afternoon forced the junior "
        "race to be shortened, but no one was hurt. The mayor handed out the trophies on the quay and promised "
        "new moorings for the sailing club before next summer. Local cafes reported their busiest day of "
        "the spring.",
        "2017-05-16T09:00:00Z",
        source="coastal-news",
    )


def syrian_denial() -> Article:
    """A new development the day after: it repeats the names and figures, but it is a denial."""
    return make_article(
        "https://levant-wire.example/2017/05/16/syria-denies-crematorium",
        "Syria denies US claim of a crematorium at Sednaya prison",
        "Damascus, 16 May 2017. The Syrian foreign ministry on Tuesday rejected as lies the US accusation that "
        "a crematorium was built at the Sednaya military prison, calling the satellite photographs shown by "
        "Stuart Jones a fabrication in the style of Hollywood. A ministry statement said the claim, like the "
        "Amnesty International report that spoke of 13,000 executions, was meant to justify aggression "
        "against Syria. The ministry said the government remained committed to the talks in Geneva.",
        "2017-05-16T11:30:00Z",
        source="levant-wire",
    )


def anniversary_piece() -> Article:
    """A year later, re-telling the briefing: it must join the old story, not open a new one."""
    return make_article(
        "https://features.example/2018/05/15/one-year-after-sednaya-crematorium",
        "One year after the US said Syria built a crematorium at Sednaya prison",
        "A year ago, on 15 May 2017, the US State Department said the Syrian government had built a crematorium "
        "at the Sednaya military prison north of Damascus to get rid of the bodies of detainees killed there. "
        "Stuart Jones, then acting assistant secretary of state, showed satellite photographs of a building "
        "with a chimney and said about fifty detainees a day were hanged at Sednaya. Amnesty International "
        "had estimated that between 5,000 and 13,000 people were executed at the prison. Families of the "
        "missing say they still have no news of their relatives.",
        "2018-05-15T08:00:00Z",
        source="features",
    )


def commander_arrest() -> Article:
    """A genuinely new development in 2025 that repeats the old names and figures."""
    return make_article(
        "https://justice-news.example/2025/10/21/former-sednaya-commander-arrested",
        "Former Sednaya military police commander arrested",
        "A former commander of the military police who oversaw the Sednaya military prison was arrested on "
        "Monday, 20 October 2025, the interior ministry said. He is accused of supervising hangings at the "
        "prison, where Amnesty International estimated that between 5,000 and 13,000 people were executed, "
        "and where the US State Department said in 2017 that a crematorium had been built. Officials said he "
        "would be questioned by investigators before being brought before a court.",
        "2025-10-21T07:30:00Z",
        source="justice-news",
    )


def turk_visit_en() -> Article:
    return make_article(
        "https://un-news.example/2025/01/15/turk-visits-sednaya",
        "UN rights chief Volker Türk visits Sednaya prison",
        "The UN High Commissioner for Human Rights, Volker Türk, toured the Sednaya prison north of Damascus "
        "on 15 January 2025, the first visit by a UN rights chief to Syria in years. He walked through the "
        "cells and the execution rooms and met families of some of the 112,000 people his office says are "
        "still missing. Türk said the truth about the fate of the disappeared must be established and that "
        "those responsible must answer for their crimes.",
        "2025-01-15T18:00:00Z",
        source="un-news",
    )


def turk_visit_ar() -> Article:
    return make_article(
        "https://arab-daily.example/2025/01/16/turk-sednaya",
        "المفوض السامي فولكر تورك يزور سجن صيدنايا",
        "زار مفوض الأمم المتحدة السامي لحقوق الإنسان فولكر تورك سجن صيدنايا شمال دمشق في 15 كانون الثاني/يناير "
        "2025، في أول زيارة لمسؤول أممي رفيع في مجال حقوق الإنسان إلى سوريا منذ سنوات. وتجول تورك في الزنازين "
        "والتقى عائلات بعض المفقودين الذين يقدر مكتبه عددهم بنحو 112,000 شخص، وقال إن مصير المختفين يجب أن "
        "يكشف وإن المسؤولين عن الجرائم يجب أن يحاسبوا.",
        "2025-01-16T07:00:00Z",
        source="arab-daily",
        lang="ar",
    )


def unrelated_arabic() -> Article:
    """Arabic, same week, same prison, another event (a bakery reopening in Sednaya town)."""
    return make_article(
        "https://arab-daily.example/2025/01/17/bakery",
        "إعادة افتتاح مخبز في بلدة صيدنايا بعد ترميمه",
        "أعيد يوم الجمعة افتتاح المخبز الرئيسي في بلدة صيدنايا بعد أشهر من أعمال الترميم التي مولتها جمعية "
        "محلية، وقال صاحب المخبز إن الإنتاج سيعود تدريجيا إلى مستواه السابق، فيما اصطف السكان منذ الصباح "
        "لشراء الخبز الطازج.",
        "2025-01-17T09:00:00Z",
        source="arab-daily",
        lang="ar",
    )
