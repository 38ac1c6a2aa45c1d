"""Multilingual fixtures for cross-lingual story tests, written in our own words for the project.

Two events of the same week at the same place (December 2024, after the prison was opened):
- ``cells_*``: rescuers search for hidden underground cells at Sednaya, reported in en, ar, fr, de, tr, ru;
- ``files_*``: investigators collect the prison's paper archive, days later, in en and fr.
And two texts that share only the prison's name and "Assad" (an exhibition, a sanctions debate).
"""

from __future__ import annotations

from stream.article import Article
from tests.story_corpus import make_article

CELLS = {
    "en": (
        "Rescuers dig for hidden cells beneath Sednaya prison",
        (
            "Civil defence teams brought drills and sniffer dogs to Sednaya prison north of Damascus on Monday, "
            "searching for underground cells where families believe relatives are still locked up. Thousands of "
            "people gathered at the gates after opposition fighters freed inmates the day before. The rescuers "
            "said they had broken through several walls and found no one yet, and asked former guards to hand "
            "over maps of the basement levels."
        ),
    ),
    "ar": (
        "فرق الإنقاذ تبحث عن زنازين سرية تحت سجن صيدنايا",
        (
            "وصلت فرق الدفاع المدني يوم الاثنين إلى سجن صيدنايا شمال دمشق مع معدات حفر وكلاب مدربة للبحث عن "
            "زنازين تحت الأرض تعتقد العائلات أن أقاربها ما زالوا محتجزين فيها. وتجمع آلاف الأشخاص عند البوابات "
            "بعد أن أطلق مقاتلو المعارضة سراح السجناء في اليوم السابق. وقال المنقذون إنهم كسروا عدة جدران ولم "
            "يعثروا على أحد حتى الآن، وطلبوا من الحراس السابقين تسليم خرائط الطوابق السفلية."
        ),
    ),
    "fr": (
        "Les secouristes cherchent des cellules cachées sous la prison de Saydnaya",
        (
            "Des équipes de la défense civile sont arrivées lundi à la prison de Saydnaya, au nord de Damas, avec "
            "des foreuses et des chiens pour chercher des cellules souterraines où des familles pensent que leurs "
            "proches sont encore enfermés. Des milliers de personnes se sont rassemblées devant les portes après "
            "la libération des détenus la veille par les combattants de l'opposition. Les secouristes disent "
            "avoir percé plusieurs murs sans trouver personne et demandent aux anciens gardiens les plans des "
            "sous-sols."
        ),
    ),
    "de": (
        "Retter suchen nach versteckten Zellen unter dem Gefängnis Saidnaja",
        (
            "Helfer des Zivilschutzes sind am Montag mit Bohrern und Spürhunden zum Gefängnis Saidnaja nördlich "
            "von Damaskus gekommen, um nach unterirdischen Zellen zu suchen, in denen Familien ihre Angehörigen "
            "noch vermuten. Tausende Menschen versammelten sich an den Toren, nachdem Oppositionskämpfer am "
            "Vortag Häftlinge befreit hatten. Die Retter durchbrachen nach eigenen Angaben mehrere Wände, fanden "
            "aber bisher niemanden und baten frühere Wärter um Pläne der Kellergeschosse."
        ),
    ),
    "tr": (
        "Kurtarma ekipleri Sednaya cezaevinin altındaki gizli hücreleri arıyor",
        (
            "Sivil savunma ekipleri pazartesi günü matkaplar ve arama köpekleriyle Şam'ın kuzeyindeki Sednaya "
            "cezaevine gelerek ailelerin yakınlarının hâlâ tutulduğuna inandığı yeraltı hücrelerini aradı. "
            "Muhalif savaşçıların bir gün önce mahkumları serbest bırakmasının ardından binlerce kişi kapılarda "
            "toplandı. Kurtarma ekipleri birkaç duvarı deldiklerini ancak henüz kimseyi bulamadıklarını söyledi "
            "ve eski gardiyanlardan bodrum katlarının planlarını istedi."
        ),
    ),
    "ru": (
        "Спасатели ищут скрытые камеры под тюрьмой Седная",
        (
            "Бригады гражданской обороны в понедельник прибыли с бурами и служебными собаками в тюрьму Седная к "
            "северу от Дамаска, чтобы искать подземные камеры, где, по мнению семей, всё ещё держат их "
            "родственников. Тысячи людей собрались у ворот после того, как накануне оппозиционные бойцы "
            "освободили заключённых. Спасатели сообщили, что пробили несколько стен, но пока никого не нашли, и "
            "попросили бывших охранников передать планы подвальных этажей."
        ),
    ),
}

FILES = {
    "en": (
        "Investigators box up Sednaya prison records for future trials",
        (
            "A team of documentation workers spent Friday at Sednaya packing registers, transfer lists and "
            "execution orders into numbered boxes, saying the paperwork could identify officials responsible "
            "for killings at the prison. Several binders had been burned before the guards fled. The group said "
            "copies would be shared with prosecutors in Europe and with a United Nations mechanism."
        ),
    ),
    "fr": (
        "Des enquêteurs mettent à l'abri les archives de la prison de Saydnaya",
        (
            "Une équipe de documentation a passé vendredi à Saydnaya à ranger registres, listes de transferts et "
            "ordres d'exécution dans des cartons numérotés, estimant que ces papiers pourraient identifier les "
            "responsables des tueries dans la prison. Plusieurs classeurs avaient été brûlés avant la fuite des "
            "gardiens. Des copies seront transmises à des procureurs européens et à un mécanisme de l'ONU."
        ),
    ),
}


def cells(lang: str, *, dated: bool = True) -> Article:
    title, text = CELLS[lang]
    return make_article(
        f"https://{lang}.news.example/2024/12/09/sednaya-cells",
        title,
        text,
        "2024-12-09T10:00:00Z",
        source=f"{lang}-news",
        lang=lang,
    ).replace(**({} if dated else {"published": None, "date_source": "none"}))


def files(lang: str) -> Article:
    title, text = FILES[lang]
    return make_article(
        f"https://{lang}.record.example/2024/12/13/sednaya-archive",
        title,
        text,
        "2024-12-13T15:00:00Z",
        source=f"{lang}-record",
        lang=lang,
    )


def exhibition() -> Article:
    return make_article(
        "https://arts.example/2024/12/10/photographs-of-survivors",
        "Berlin gallery shows portraits of former Sednaya inmates",
        "A small gallery in Berlin opened an exhibition of black-and-white portraits of men who survived "
        "Sednaya, each photographed holding an object they kept from their years inside. The photographer "
        "said she began the series in 2019 in refugee shelters. Visitors can listen to recorded interviews. "
        "The show runs until March and entry is free; Assad is not named once in the captions.",
        "2024-12-10T09:00:00Z",
        source="arts",
    )


def sanctions_debate() -> Article:
    return make_article(
        "https://policy.example/2024/12/11/sanctions-relief",
        "Lawmakers split over lifting sanctions after Assad's fall",
        "Members of the European Parliament argued on Wednesday about how fast to ease sanctions on Syria "
        "now that Assad has left the country. Supporters of relief pointed to shortages of fuel and "
        "medicine; opponents want guarantees first, citing Sednaya as a reminder of what the security "
        "services did. No vote was held and the debate resumes in January.",
        "2024-12-11T14:00:00Z",
        source="policy",
    )
