"""A store's daily or weekly digest e-mail: the period's figures, when it broke down, the cases
recovered and missed, the team's recognition and, weekly, next week's riskiest hours.

The period is a whole store-local day or week: the digest written on a day covers the day
before; the weekly one the last full week, Monday to Sunday, so that the digest sent on
Monday morning covers last week. Its figures are the report's (`views.report`, `kiosk-host
report --json`) for the same local days, read at the period's last second. The message is
multipart/alternative: plain text and HTML that mail clients render as they are (inline
styles only, tables for layout, no classes, scripts or external images). Its Message-ID comes
from the store, the kind of digest and the period's first day, so that a digest written again
for the same period is recognisably the same message.

The texts are in `TEXTS`: English, German, French, Spanish and Dutch, the languages of the
alerts (notify/catalogue.py); any other language reads English. The bodies are the Jinja
templates `templates/digest.html` (autoescaped) and `templates/digest.txt`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any, Final, Literal, get_args

from kiosk_host.aggregator import risk, views
from kiosk_host.notify.message import language_of, mail_templates
from kiosk_host.rules.recognition import (
    REASON_MAX,
    Board,
    Rating,
    Recognised,
    above_store,
    attribute,
    board,
)
from kiosk_host.rules.recovery import OVERDUE, Case
from kiosk_host.rules.stores import WEEKDAYS, StoreConfig, Stores, local_day
from kiosk_host.storage.protocol import Store

Kind = Literal["day", "week"]
KINDS: Final[tuple[Kind, ...]] = get_args(Kind)
DEFAULT_LANGUAGE: Final = "en"
MESSAGE_ID_DOMAIN: Final = "kiosk-host"
_TEMPLATES = Path(__file__).resolve().parent / "templates"
_NONE: Final = "\N{EN DASH}"  # a figure or a time there is none of
_CODES_SHOWN = 6  # as the recognition board's reasons (rules/recognition.py)

# The heatmap's colours, the dashboard's (dashboard/static/charts.js): an hour without
# breakdowns light grey, the others the dashboard's red at 15 % to 100 % strength. Blended onto
# the white of the mail as solid colours, since some mail clients ignore rgba().
HEAT_RGB: Final = (192, 57, 43)
HEAT_EMPTY: Final = "#f1f3f5"
HEAT_LIGHT_TEXT: Final = 0.55  # above this strength the count is written in white

TEXTS: Final[dict[str, dict[str, str]]] = {
    "en": {
        "days": "Mon Tue Wed Thu Fri Sat Sun",
        "months": "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec",
        "date": "{weekday} {day} {month}",
        "date_year": "{weekday} {day} {month} {year}",
        "time": "{date} {time}",
        "week": "week {week}",
        "week_span": "week {week}, {first} to {last}",
        "pct": "{n}%",
        "subject": "{store}: {period}, {satisfied}, {breakdowns}, {missed}",
        "subject_none": "{store}: {period}, no ratings, {missed}",
        "satisfied": "{pct} satisfied",
        "breakdowns.one": "{n} breakdown",
        "breakdowns.other": "{n} breakdowns",
        "missed.one": "{n} missed",
        "missed.other": "{n} missed",
        "title.day": "Daily digest of {store}",
        "title.week": "Weekly digest of {store}",
        "no_ratings": "No ratings in this period.",
        "figures": "The figures",
        "figure.ratings": "ratings",
        "figure.satisfaction": "satisfied",
        "figure.breakdowns": "breakdowns",
        "figure.opened_cases": "cases opened",
        "figure.recovered_in_time": "recovered in time",
        "figure.overdue_cases": "missed the deadline",
        "figure.open_cases": "waiting now",
        "figure.outside_hours": "outside opening hours",
        "counts": "By score (1 lowest): {counts}",
        "day": "day",
        "total": "the period",
        "heatmap": "Breakdowns by day and hour",
        "heatmap_none": "No breakdowns in this period.",
        "hour": "hour",
        "recovered": "Recovered in time",
        "recovered_none": "No case was recovered in this period.",
        "missed_cases": "Missed",
        "missed_none": "No case missed its deadline in this period.",
        "col.code": "code",
        "col.station": "station",
        "col.opened": "opened",
        "col.outcome": "outcome",
        "col.fixed_by": "fixed by",
        "col.fixed_at": "fixed",
        "col.confirmed": "confirmed",
        "col.deadline": "deadline",
        "outcome.wow": "Wow!",
        "outcome.recovered": "made right",
        "outcome.breached": "nobody fixed it in time",
        "outcome.late": "fixed late",
        "outcome.unconfirmed": "fixed, not confirmed in time",
        "recognition": "Recognition",
        "team": "The team",
        "team.ratings": "{smooth} of {ratings} customers gave the top score ({pct})",
        "team.recovered": "{recovered} won back in time, {wow} of them said Wow!",
        "team.none": "No ratings and no recoveries in this period.",
        "board_none": "Nobody stood out above the store this period.",
        "reason.top": "{smooth} of {ratings} customers gave the top score ({own}, against {store}"
        " for the store)",
        "reason.wow": "made {people} say Wow! {window} ({codes})",
        "reason.fixed": "made it right for {people} {window} ({codes})",
        "window": "within {window}",
        "people.one": "{n} customer",
        "people.other": "{n} customers",
        "people_more.one": "{n} more customer",
        "people_more.other": "{n} more customers",
        "codes.one": "case {codes}",
        "codes.other": "cases {codes}",
        "codes_rest.one": "{codes} and {n} more",
        "codes_rest.other": "{codes} and {n} more",
        "risk": "Next week's riskiest hours",
        "risk_none": "No hour stands out: too little history, or no breakdowns in it.",
        "risk.day": "Monday,Tuesday,Wednesday,Thursday,Friday,Saturday,Sunday",
        "risk.when": "Mondays,Tuesdays,Wednesdays,Thursdays,Fridays,Saturdays,Sundays",
        "risk.days": "Mondays,Tuesdays,Wednesdays,Thursdays,Fridays,Saturdays,Sundays",
        "risk.head": "{when} {start}-{end}: {expected} breakdowns expected",
        "risk.seen_none": "{head} (no {day} at this hour seen yet: the store's average hour)",
        "risk.seen_one": "{head} ({breakdowns} on the one {day} seen so far)",
        "risk.seen": "{head} ({breakdowns} in the last {seen} {days})",
        "decimal": ".",
        "footer": "Sent automatically by kiosk-host. Replies to this message are not read.",
    },
    "de": {
        "days": "Mo Di Mi Do Fr Sa So",
        "months": "Jan. Feb. März Apr. Mai Juni Juli Aug. Sep. Okt. Nov. Dez.",
        "date": "{weekday}, {day}. {month}",
        "date_year": "{weekday}, {day}. {month} {year}",
        "time": "{date} {time}",
        "week": "KW {week}",
        "week_span": "KW {week}, {first} bis {last}",
        "pct": "{n} %",
        "subject": "{store}: {period}, {satisfied}, {breakdowns}, {missed}",
        "subject_none": "{store}: {period}, keine Bewertungen, {missed}",
        "satisfied": "{pct} zufrieden",
        "breakdowns.one": "{n} schlechte Bewertung",
        "breakdowns.other": "{n} schlechte Bewertungen",
        "missed.one": "{n} Frist verpasst",
        "missed.other": "{n} Fristen verpasst",
        "title.day": "Tagesbericht der Filiale {store}",
        "title.week": "Wochenbericht der Filiale {store}",
        "no_ratings": "Keine Bewertungen in diesem Zeitraum.",
        "figures": "Die Zahlen",
        "figure.ratings": "Bewertungen",
        "figure.satisfaction": "zufrieden",
        "figure.breakdowns": "schlechte Bewertungen",
        "figure.opened_cases": "Fälle eröffnet",
        "figure.recovered_in_time": "rechtzeitig gutgemacht",
        "figure.overdue_cases": "Frist verpasst",
        "figure.open_cases": "warten jetzt",
        "figure.outside_hours": "außerhalb der Öffnungszeiten",
        "counts": "Nach Bewertung (1 die schlechteste): {counts}",
        "day": "Tag",
        "total": "Zeitraum",
        "heatmap": "Schlechte Bewertungen nach Tag und Stunde",
        "heatmap_none": "Keine schlechten Bewertungen in diesem Zeitraum.",
        "hour": "Stunde",
        "recovered": "Rechtzeitig gutgemacht",
        "recovered_none": "In diesem Zeitraum wurde kein Fall gutgemacht.",
        "missed_cases": "Frist verpasst",
        "missed_none": "In diesem Zeitraum hat kein Fall seine Frist verpasst.",
        "col.code": "Code",
        "col.station": "Station",
        "col.opened": "eröffnet",
        "col.outcome": "Ergebnis",
        "col.fixed_by": "erledigt von",
        "col.fixed_at": "erledigt",
        "col.confirmed": "bestätigt",
        "col.deadline": "Frist",
        "outcome.wow": "Wow!",
        "outcome.recovered": "gutgemacht",
        "outcome.breached": "niemand hat es rechtzeitig erledigt",
        "outcome.late": "verspätet erledigt",
        "outcome.unconfirmed": "erledigt, nicht rechtzeitig bestätigt",
        "recognition": "Anerkennung",
        "team": "Das Team",
        "team.ratings": "{smooth} von {ratings} Kunden gaben die beste Bewertung ({pct})",
        "team.recovered": "{recovered} rechtzeitig zurückgewonnen, {wow} davon sagten Wow!",
        "team.none": "Keine Bewertungen und nichts gutgemacht in diesem Zeitraum.",
        "board_none": "In diesem Zeitraum lag niemand über der Filiale.",
        "reason.top": "{smooth} von {ratings} Kunden gaben die beste Bewertung ({own}, gegenüber"
        " {store} für die Filiale)",
        "reason.wow": "hat {people} {window} zu einem Wow! gebracht ({codes})",
        "reason.fixed": "hat es für {people} {window} gutgemacht ({codes})",
        "window": "innerhalb von {window}",
        "people.one": "einen Kunden",
        "people.other": "{n} Kunden",
        "people_more.one": "einen weiteren Kunden",
        "people_more.other": "{n} weitere Kunden",
        "codes.one": "Fall {codes}",
        "codes.other": "Fälle {codes}",
        "codes_rest.one": "{codes} und ein weiterer",
        "codes_rest.other": "{codes} und {n} weitere",
        "risk": "Die riskantesten Stunden der nächsten Woche",
        "risk_none": "Keine Stunde fällt auf: zu wenig Verlauf, oder keine schlechten Bewertungen.",
        "risk.day": "Montag,Dienstag,Mittwoch,Donnerstag,Freitag,Samstag,Sonntag",
        "risk.days": "Montagen,Dienstagen,Mittwochen,Donnerstagen,Freitagen,Samstagen,Sonntagen",
        "risk.when": "Montags,Dienstags,Mittwochs,Donnerstags,Freitags,Samstags,Sonntags",
        "risk.head": (
            "{when} {start}\N{EN DASH}{end} Uhr: {expected} schlechte Bewertungen erwartet"
        ),
        "risk.seen_none": "{head} (noch kein {day} zu dieser Stunde gesehen: die "
        "durchschnittliche Stunde der Filiale)",
        "risk.seen_one": "{head} ({breakdowns} am einzigen bisher gesehenen {day})",
        "risk.seen": "{head} ({breakdowns} an den letzten {seen} {days})",
        "decimal": ",",
        "footer": (
            "Automatisch von kiosk-host gesendet. Antworten auf diese Nachricht werden nicht "
            "gelesen."
        ),
    },
    # French typography: a narrow no-break space (U+202F) before : ! ? and %, so that a line
    # never breaks before the sign.
    "fr": {
        "days": "lun. mar. mer. jeu. ven. sam. dim.",
        "months": "janv. févr. mars avr. mai juin juil. août sept. oct. nov. déc.",
        "date": "{weekday} {day} {month}",
        "date_year": "{weekday} {day} {month} {year}",
        "time": "{date} {time}",
        "week": "semaine {week}",
        "week_span": "semaine {week}, du {first} au {last}",
        "pct": "{n}\u202f%",
        "subject": "{store}\u202f: {period}, {satisfied}, {breakdowns}, {missed}",
        "subject_none": "{store}\u202f: {period}, aucune note, {missed}",
        "satisfied": "{pct} satisfaits",
        "breakdowns.one": "{n} mauvaise note",
        "breakdowns.other": "{n} mauvaises notes",
        "missed.one": "{n} échéance manquée",
        "missed.other": "{n} échéances manquées",
        "title.day": "Bilan du jour de {store}",
        "title.week": "Bilan de la semaine de {store}",
        "no_ratings": "Aucune note sur cette période.",
        "figures": "Les chiffres",
        "figure.ratings": "notes",
        "figure.satisfaction": "satisfaits",
        "figure.breakdowns": "mauvaises notes",
        "figure.opened_cases": "cas ouverts",
        "figure.recovered_in_time": "réglés à temps",
        "figure.overdue_cases": "échéance manquée",
        "figure.open_cases": "en attente",
        "figure.outside_hours": "hors des heures d'ouverture",
        "counts": "Par note (1 la plus basse)\u202f: {counts}",
        "day": "jour",
        "total": "la période",
        "heatmap": "Mauvaises notes par jour et par heure",
        "heatmap_none": "Aucune mauvaise note sur cette période.",
        "hour": "heure",
        "recovered": "Réglés à temps",
        "recovered_none": "Aucun cas réglé à temps sur cette période.",
        "missed_cases": "Échéances manquées",
        "missed_none": "Aucun cas n'a manqué son échéance sur cette période.",
        "col.code": "code",
        "col.station": "poste",
        "col.opened": "ouvert",
        "col.outcome": "résultat",
        "col.fixed_by": "réglé par",
        "col.fixed_at": "réglé",
        "col.confirmed": "confirmé",
        "col.deadline": "échéance",
        "outcome.wow": "Wow\u202f!",
        "outcome.recovered": "arrangé",
        "outcome.breached": "personne ne l'a réglé à temps",
        "outcome.late": "réglé en retard",
        "outcome.unconfirmed": "réglé, pas confirmé à temps",
        "recognition": "Reconnaissance",
        "team": "L'équipe",
        "team.ratings": "{smooth} clients sur {ratings} ont donné la meilleure note ({pct})",
        "team.recovered": "{recovered} reconquis à temps, dont {wow} ont dit Wow\u202f!",
        "team.none": "Ni notes ni cas réglés sur cette période.",
        "board_none": "Personne ne s'est distingué au-dessus du magasin sur cette période.",
        "reason.top": "{smooth} clients sur {ratings} ont donné la meilleure note ({own}, contre"
        " {store} pour le magasin)",
        "reason.wow": "a fait dire Wow\u202f! à {people} {window} ({codes})",
        "reason.fixed": "a arrangé les choses pour {people} {window} ({codes})",
        "window": "en moins de {window}",
        "people.one": "un client",
        "people.other": "{n} clients",
        "people_more.one": "un client de plus",
        "people_more.other": "{n} clients de plus",
        "codes.one": "cas {codes}",
        "codes.other": "cas {codes}",
        "codes_rest.one": "{codes} et un autre",
        "codes_rest.other": "{codes} et {n} autres",
        "risk": "Les heures les plus à risque de la semaine prochaine",
        "risk_none": (
            "Aucune heure ne se distingue\u202f: trop peu d'historique, ou aucune mauvaise note."
        ),
        "risk.day": "lundi,mardi,mercredi,jeudi,vendredi,samedi,dimanche",
        "risk.when": "Le lundi,Le mardi,Le mercredi,Le jeudi,Le vendredi,Le samedi,Le dimanche",
        "risk.days": "lundis,mardis,mercredis,jeudis,vendredis,samedis,dimanches",
        "risk.head": "{when} de {start} à {end}\u202f: {expected} mauvaises notes attendues",
        "risk.seen_none": "{head} (aucun {day} vu à cette heure\u202f: l'heure moyenne du magasin)",
        "risk.seen_one": "{head} ({breakdowns} le seul {day} vu jusqu'ici)",
        "risk.seen": "{head} ({breakdowns} sur les {seen} derniers {days})",
        "decimal": ",",
        "footer": (
            "Envoyé automatiquement par kiosk-host. Les réponses à ce message ne sont pas lues."
        ),
    },
    "es": {
        "days": "lun mar mié jue vie sáb dom",
        "months": "ene feb mar abr may jun jul ago sept oct nov dic",
        "date": "{weekday} {day} {month}",
        "date_year": "{weekday} {day} {month} {year}",
        "time": "{date} {time}",
        "week": "semana {week}",
        "week_span": "semana {week}, del {first} al {last}",
        "pct": "{n} %",
        "subject": "{store}: {period}, {satisfied}, {breakdowns}, {missed}",
        "subject_none": "{store}: {period}, sin valoraciones, {missed}",
        "satisfied": "{pct} satisfechos",
        "breakdowns.one": "{n} valoración baja",
        "breakdowns.other": "{n} valoraciones bajas",
        "missed.one": "{n} plazo vencido",
        "missed.other": "{n} plazos vencidos",
        "title.day": "Resumen diario de {store}",
        "title.week": "Resumen semanal de {store}",
        "no_ratings": "Sin valoraciones en este periodo.",
        "figures": "Las cifras",
        "figure.ratings": "valoraciones",
        "figure.satisfaction": "satisfechos",
        "figure.breakdowns": "valoraciones bajas",
        "figure.opened_cases": "casos abiertos",
        "figure.recovered_in_time": "resueltos a tiempo",
        "figure.overdue_cases": "plazo vencido",
        "figure.open_cases": "en espera ahora",
        "figure.outside_hours": "fuera del horario",
        "counts": "Por valoración (1 la más baja): {counts}",
        "day": "día",
        "total": "el periodo",
        "heatmap": "Valoraciones bajas por día y hora",
        "heatmap_none": "Sin valoraciones bajas en este periodo.",
        "hour": "hora",
        "recovered": "Resueltos a tiempo",
        "recovered_none": "Ningún caso se resolvió a tiempo en este periodo.",
        "missed_cases": "Plazo vencido",
        "missed_none": "Ningún caso venció su plazo en este periodo.",
        "col.code": "código",
        "col.station": "puesto",
        "col.opened": "abierto",
        "col.outcome": "resultado",
        "col.fixed_by": "resuelto por",
        "col.fixed_at": "resuelto",
        "col.confirmed": "confirmado",
        "col.deadline": "plazo",
        "outcome.wow": "¡Wow!",
        "outcome.recovered": "arreglado",
        "outcome.breached": "nadie lo resolvió a tiempo",
        "outcome.late": "resuelto tarde",
        "outcome.unconfirmed": "resuelto, sin confirmar a tiempo",
        "recognition": "Reconocimiento",
        "team": "El equipo",
        "team.ratings": "{smooth} de {ratings} clientes dieron la valoración máxima ({pct})",
        "team.recovered": "{recovered} recuperados a tiempo, {wow} de ellos dijeron ¡Wow!",
        "team.none": "Ni valoraciones ni casos resueltos en este periodo.",
        "board_none": "Nadie destacó por encima de la tienda en este periodo.",
        "reason.top": "{smooth} de {ratings} clientes dieron la valoración máxima ({own}, frente"
        " a {store} de la tienda)",
        "reason.wow": "hizo decir ¡Wow! a {people} {window} ({codes})",
        "reason.fixed": "lo arregló para {people} {window} ({codes})",
        "window": "en menos de {window}",
        "people.one": "un cliente",
        "people.other": "{n} clientes",
        "people_more.one": "un cliente más",
        "people_more.other": "{n} clientes más",
        "codes.one": "caso {codes}",
        "codes.other": "casos {codes}",
        "codes_rest.one": "{codes} y otro más",
        "codes_rest.other": "{codes} y {n} más",
        "risk": "Las horas de más riesgo de la próxima semana",
        "risk_none": "Ninguna hora destaca: poco historial, o ninguna valoración baja en él.",
        "risk.day": "lunes,martes,miércoles,jueves,viernes,sábado,domingo",
        "risk.when": "Los lunes,Los martes,Los miércoles,Los jueves,Los viernes,Los sábados,"
        "Los domingos",
        "risk.days": "lunes,martes,miércoles,jueves,viernes,sábados,domingos",
        "risk.head": "{when} de {start} a {end}: {expected} valoraciones bajas esperadas",
        "risk.seen_none": "{head} (aún ningún {day} visto a esta hora: la hora media de la tienda)",
        "risk.seen_one": "{head} ({breakdowns} el único {day} visto hasta ahora)",
        "risk.seen": "{head} ({breakdowns} en los últimos {seen} {days})",
        "decimal": ",",
        "footer": (
            "Enviado automáticamente por kiosk-host. Las respuestas a este mensaje no se leen."
        ),
    },
    # Dutch in the informal "je" form, as the alerts (notify/catalogue.py).
    "nl": {
        "days": "ma di wo do vr za zo",
        "months": "jan feb mrt apr mei jun jul aug sep okt nov dec",
        "date": "{weekday} {day} {month}",
        "date_year": "{weekday} {day} {month} {year}",
        "time": "{date} {time}",
        "week": "week {week}",
        "week_span": "week {week}, {first} t/m {last}",
        "pct": "{n}%",
        "subject": "{store}: {period}, {satisfied}, {breakdowns}, {missed}",
        "subject_none": "{store}: {period}, geen beoordelingen, {missed}",
        "satisfied": "{pct} tevreden",
        "breakdowns.one": "{n} slechte beoordeling",
        "breakdowns.other": "{n} slechte beoordelingen",
        "missed.one": "{n} deadline gemist",
        "missed.other": "{n} deadlines gemist",
        "title.day": "Dagoverzicht van {store}",
        "title.week": "Weekoverzicht van {store}",
        "no_ratings": "Geen beoordelingen in deze periode.",
        "figures": "De cijfers",
        "figure.ratings": "beoordelingen",
        "figure.satisfaction": "tevreden",
        "figure.breakdowns": "slechte beoordelingen",
        "figure.opened_cases": "zaken geopend",
        "figure.recovered_in_time": "op tijd goedgemaakt",
        "figure.overdue_cases": "te laat",
        "figure.open_cases": "nog open",
        "figure.outside_hours": "buiten openingstijden",
        "counts": "Per score (1 de laagste): {counts}",
        "day": "dag",
        "total": "de periode",
        "heatmap": "Slechte beoordelingen per dag en uur",
        "heatmap_none": "Geen slechte beoordelingen in deze periode.",
        "hour": "uur",
        "recovered": "Op tijd goedgemaakt",
        "recovered_none": "In deze periode is geen zaak op tijd goedgemaakt.",
        "missed_cases": "Deadline gemist",
        "missed_none": "In deze periode heeft geen zaak de deadline gemist.",
        "col.code": "code",
        "col.station": "werkplek",
        "col.opened": "geopend",
        "col.outcome": "uitkomst",
        "col.fixed_by": "opgelost door",
        "col.fixed_at": "opgelost",
        "col.confirmed": "bevestigd",
        "col.deadline": "deadline",
        "outcome.wow": "Wow!",
        "outcome.recovered": "goedgemaakt",
        "outcome.breached": "niemand heeft het op tijd opgelost",
        "outcome.late": "te laat opgelost",
        "outcome.unconfirmed": "opgelost, niet op tijd bevestigd",
        "recognition": "Waardering",
        "team": "Het team",
        "team.ratings": "de hoogste score van {smooth} van de {ratings} klanten ({pct})",
        "team.recovered": "{recovered} op tijd teruggewonnen, {wow} keer Wow!",
        "team.none": "Geen beoordelingen en niets goedgemaakt in deze periode.",
        "board_none": "In deze periode stak niemand boven de winkel uit.",
        "reason.top": "kreeg de hoogste score van {smooth} van de {ratings} klanten ({own}, tegen"
        " {store} voor de winkel)",
        "reason.wow": "liet {people} {window} Wow! zeggen ({codes})",
        "reason.fixed": "maakte het {window} goed voor {people} ({codes})",
        "window": "binnen {window}",
        "people.one": "één klant",
        "people.other": "{n} klanten",
        "people_more.one": "nog één klant",
        "people_more.other": "nog {n} klanten",
        "codes.one": "zaak {codes}",
        "codes.other": "zaken {codes}",
        "codes_rest.one": "{codes} en nog één",
        "codes_rest.other": "{codes} en nog {n}",
        "risk": "De riskantste uren van volgende week",
        "risk_none": "Geen uur valt op: te weinig geschiedenis, of geen slechte beoordelingen.",
        "risk.day": "maandag,dinsdag,woensdag,donderdag,vrijdag,zaterdag,zondag",
        "risk.when": "Op maandag,Op dinsdag,Op woensdag,Op donderdag,Op vrijdag,Op zaterdag,"
        "Op zondag",
        "risk.days": "maandagen,dinsdagen,woensdagen,donderdagen,vrijdagen,zaterdagen,zondagen",
        "risk.head": "{when} van {start} tot {end}: {expected} slechte beoordelingen verwacht",
        "risk.seen_none": "{head} (nog geen {day} op dit uur gezien: het gemiddelde uur van de "
        "winkel)",
        "risk.seen_one": "{head} ({breakdowns} op de enige {day} tot nu toe)",
        "risk.seen": "{head} ({breakdowns} op de laatste {seen} {days})",
        "decimal": ",",
        "footer": (
            "Automatisch verstuurd door kiosk-host. Antwoorden op dit bericht worden niet gelezen."
        ),
    },
}


@dataclass(frozen=True)
class Period:
    """The store-local days a digest covers, [since, until) in Unix seconds."""

    kind: Kind
    first: date
    last: date  # inclusive
    since: int
    until: int

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1


def period_of(cfg: StoreConfig, kind: str, now: int) -> Period:
    """The period a digest written at `now` covers: the local day before (day), or the last
    full local week, Monday to Sunday, before the one containing `now` (week). ValueError for
    another kind."""
    today = local_day(cfg, now)
    if kind == "week":
        return period_from(cfg, kind, today - timedelta(days=today.weekday() + 7))
    return period_from(cfg, kind, today - timedelta(days=1))


def period_from(cfg: StoreConfig, kind: str, first: date) -> Period:
    """The day, or the week (Monday to Sunday), whose first local day is `first`. ValueError
    for another kind, or a week that does not begin on a Monday."""
    if kind not in KINDS:
        raise ValueError(f"a digest covers a day or a week, not {kind!r}")
    if kind == "week" and first.weekday() != 0:
        raise ValueError(f"a week's digest begins on a Monday, not on {first:%A %Y-%m-%d}")
    last = first + timedelta(days=6 if kind == "week" else 0)
    since, until = views.local_bounds(cfg, first, last)
    return Period(kind, first, last, since, until)


def due_periods(
    cfg: StoreConfig,
    last_sent: Mapping[str, date | None],
    now: int,
    kinds: Iterable[str] = KINDS,
) -> list[Period]:
    """The digests due at `now`, daily first: each kind of `kinds` whose latest period is not
    the one `last_sent` names by its first day (None or left out: none sent yet). The daily
    digest goes out every day and the weekly one on Mondays, each from the store-local hour
    `digest_hour` (07:00 by default) on; before that hour the latest is still the one the day
    before sent. A host that was down at that hour sends the latest digest when it is back,
    and only the latest: a period missed altogether is not caught up."""
    local = datetime.fromtimestamp(now, cfg.tz)
    today = local.date() if local.hour >= cfg.digest_hour else local.date() - timedelta(days=1)
    latest = {
        "day": period_from(cfg, "day", today - timedelta(days=1)),
        "week": period_from(cfg, "week", today - timedelta(days=today.weekday() + 7)),
    }
    return [latest[k] for k in KINDS if k in kinds and last_sent.get(k) != latest[k].first]


def message_id(store: str, period: Period) -> str:
    """The digest's stable Message-ID: `<digest-STORE-KIND-FIRSTDAY@kiosk-host>`."""
    return f"<digest-{store}-{period.kind}-{period.first.isoformat()}@{MESSAGE_ID_DOMAIN}>"


def digest_message(
    storage: Store,
    stores_or_cfg: Stores | StoreConfig,
    store: str,
    period: str,
    now: int,
    language: str | None = None,
    first: date | None = None,
) -> EmailMessage:
    """The digest of `store` for the `period` ("day" or "week") before `now` (`period_of`),
    or for the one beginning on local day `first` when given (`period_from`), in `language`
    (None: the store's `language` setting), times in the store's zone: an EmailMessage with
    Subject, Date (`now`), Message-ID (`message_id`), Auto-Submitted and Content-Language,
    and no sender or recipients (the sender sets them). ValueError for another period, a week
    not beginning on a Monday, or a period not over by `now`."""
    cfg = stores_or_cfg.get(store) if isinstance(stores_or_cfg, Stores) else stores_or_cfg
    span = period_of(cfg, period, now) if first is None else period_from(cfg, period, first)
    if span.until > now:
        raise ValueError(f"the {period} from {span.first} is not over at {now}")
    lang = _language(cfg.language if language is None else language)
    context = _context(storage, cfg, store, span, lang)
    msg = EmailMessage()
    msg["Subject"] = context["subject"]
    msg["Date"] = format_datetime(datetime.fromtimestamp(now, cfg.tz))
    msg["Message-ID"] = message_id(store, span)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(_ENV.get_template("digest.txt").render(context), charset="utf-8")
    msg.add_alternative(_ENV.get_template("digest.html").render(context), subtype="html")
    msg["Content-Language"] = lang  # after the parts: setting content clears Content-* headers
    return msg


def _language(code: str) -> str:
    """The digest's language for a code or tag: that of the alerts (`language_of`) when the
    digest has its texts, else English."""
    lang = language_of(code)
    return lang if lang in TEXTS else DEFAULT_LANGUAGE


def _context(
    storage: Store, cfg: StoreConfig, store: str, span: Period, lang: str
) -> dict[str, Any]:
    """Everything the templates show, worked out and written in the language `lang`."""
    w = TEXTS[lang]
    rows = views.report(storage, cfg, store, span.until - 1, span.days)
    totals = _totals(rows, cfg.scale)
    totals["opened_cases"] = len(storage.cases_opened_between(store, span.since, span.until))
    recovered = storage.recovered_between(store, span.since, span.until)
    # The cases the report counts as overdue on the period's days: their deadline fell in it.
    missed = [c for c in storage.cases(store, OVERDUE) if span.since <= c.deadline < span.until]
    missed.sort(key=lambda c: (c.deadline, c.code))
    recovered.sort(key=lambda c: (c.verdict_at or 0, c.code))
    credits = storage.rating_credits(store, span.since, span.until)
    ratings = [
        Rating(staff or attribute((), cfg, station, at), score, at, scale)
        for at, score, staff, station, scale in credits
    ]
    recognised = board(cfg, ratings, recovered, span.since, span.until)
    when = _period_name(w, span)
    share = totals["satisfaction"]
    missed_n = _plural(w, "missed", totals["overdue_cases"])
    if share is None:
        subject = w["subject_none"].format(store=store, period=when, missed=missed_n)
    else:
        subject = w["subject"].format(
            store=store,
            period=when,
            satisfied=w["satisfied"].format(pct=_pct(w, share)),
            breakdowns=_plural(w, "breakdowns", totals["breakdowns"]),
            missed=missed_n,
        )
    # A week's days one by one, unless none had a rating; a day's figures are the period's own.
    days = [] if span.kind == "day" or share is None else rows
    return {
        "lang": lang,
        "w": w,
        "store": store,
        "kind": span.kind,
        "subject": subject,
        "title": w[f"title.{span.kind}"].format(store=store),
        "period": _period_span(w, span),
        "first": span.first.isoformat(),
        "last": span.last.isoformat(),
        "no_ratings": share is None,
        "figures": _figures(w, totals, "period"),
        "counts": w["counts"].format(
            counts=", ".join(f"{s}: {n}" for s, n in enumerate(totals["counts"], start=1))
        ),
        "counts_value": ",".join(str(n) for n in totals["counts"]),
        "days": [
            {
                "day": r["day"],
                "label": _date(w, date.fromisoformat(r["day"])),
                "figures": _figures(w, r, r["day"]),
            }
            for r in days
        ],
        "heatmap": _heatmap(w, rows),
        "recovered": [_recovered_line(w, cfg, c) for c in recovered],
        "missed": [_missed_line(w, cfg, c) for c in missed],
        "team": _team(w, recognised),
        "team_figures": dataclasses.asdict(recognised.team),
        "staff": [
            {
                "staff": s.staff,
                "name": s.name or s.staff,
                "reasons": _reasons(w, cfg, s, recognised.team.smooth_rate),
            }
            for s in recognised.staff
        ],
        "risk": next_week_risk(storage, cfg, store, span, lang) if span.kind == "week" else None,
    }


# The figures of a period or a day, in the order shown; open_cases (waiting now) and
# opened_cases only for the whole period.
_DAY_FIGURES: Final = (
    "ratings", "satisfaction", "breakdowns", "recovered_in_time", "overdue_cases",
)  # fmt: skip
_PERIOD_FIGURES: Final = (*_DAY_FIGURES, "opened_cases", "open_cases", "outside_hours")


def _totals(rows: Sequence[Mapping[str, Any]], scale: int) -> dict[str, Any]:
    """The period's figures from the report's days: sums, and the share satisfied over the
    whole period; the cases waiting now as the report gives them (the same on every day)."""
    ratings = sum(r["ratings"] for r in rows)
    breakdowns = sum(r["breakdowns"] for r in rows)
    return {
        "counts": [sum(r["counts"][s] for r in rows) for s in range(scale)],
        "ratings": ratings,
        "breakdowns": breakdowns,
        "satisfaction": round((ratings - breakdowns) / ratings, 4) if ratings else None,
        "outside_hours": sum(r["outside_hours"] for r in rows),
        "open_cases": rows[-1]["open_cases"],
        "overdue_cases": sum(r["overdue_cases"] for r in rows),
        "recovered_in_time": sum(r["recovered_in_time"] for r in rows),
    }


def _figures(w: Mapping[str, str], figures: Mapping[str, Any], scope: str) -> list[dict[str, str]]:
    """Each figure with its label, its value as shown and as data (`value`: the report's own
    number, empty for none), for the templates and for whoever reads them back."""
    names = _PERIOD_FIGURES if scope == "period" else _DAY_FIGURES
    out = []
    for name in names:
        value = figures[name]
        if name == "outside_hours" and not value:
            continue  # nothing to say: the usual case
        shown = _NONE if value is None else _pct(w, value) if name == "satisfaction" else str(value)
        out.append({"name": name, "label": w[f"figure.{name}"], "shown": shown,
                    "value": "" if value is None else str(value), "scope": scope})  # fmt: skip
    return out


def _heatmap(w: Mapping[str, str], rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One row per day, one cell per local hour: the breakdowns in it, coloured on the
    dashboard's scale (strongest: the period's busiest hour)."""
    top = max((n for r in rows for n in r["breakdowns_by_hour"].values()), default=0)
    lines = []
    for r in rows:
        cells = []
        for hour in range(24):
            n = r["breakdowns_by_hour"].get(f"{hour:02d}", 0)
            background, text = heat_colours(n, top)
            cells.append({"hour": f"{hour:02d}", "n": n, "bg": background, "fg": text})
        lines.append({"day": r["day"], "label": _date(w, date.fromisoformat(r["day"])),
                      "cells": cells, "breakdowns": r["breakdowns"],
                      "hours": [c for c in cells if c["n"]]})  # fmt: skip
    return {"rows": lines, "max": top, "hours": [f"{h:02d}" for h in range(24)]}


def heat_colours(n: int, top: int) -> tuple[str, str]:
    """The background and text colours (#rrggbb) of an hour with `n` breakdowns when the
    busiest hour of the period had `top`: the dashboard's heatmap scale."""
    if not n or not top:
        return HEAT_EMPTY, "#5f6b76"
    strength = n / top
    alpha = 0.15 + 0.85 * strength
    mixed = (round(255 + (c - 255) * alpha) for c in HEAT_RGB)
    text = "#ffffff" if strength > HEAT_LIGHT_TEXT else "#1d2329"
    return "#" + "".join(f"{c:02x}" for c in mixed), text


def _recovered_line(w: Mapping[str, str], cfg: StoreConfig, c: Case) -> dict[str, str]:
    return {
        "code": c.code,
        "station": c.station,
        "outcome": w["outcome.wow"] if c.state == "wow" else w["outcome.recovered"],
        "fixed_by": _who(cfg, c.fixed_by),
        "fixed_at": _time(w, cfg, c.fixed_at),
        "confirmed": _time(w, cfg, c.verdict_at),
        "opened": _time(w, cfg, c.opened_at),
    }


def _missed_line(w: Mapping[str, str], cfg: StoreConfig, c: Case) -> dict[str, Any]:
    outcome = "late" if c.late_fix else c.state
    return {
        "code": c.code,
        "station": c.station,
        "outcome": w[f"outcome.{outcome}"],
        "fixed": c.fixed_by is not None,
        "fixed_by": _who(cfg, c.fixed_by),
        "fixed_at": _time(w, cfg, c.fixed_at),
        "deadline": _time(w, cfg, c.deadline),
        "opened": _time(w, cfg, c.opened_at),
    }


def _who(cfg: StoreConfig, staff: str | None) -> str:
    return _NONE if staff is None else cfg.name_of(staff) or staff


def _team(w: Mapping[str, str], b: Board) -> list[str]:
    """The team's figures first: everyone's top ratings, and the customers won back."""
    t = b.team
    lines = []
    if t.ratings and t.smooth_rate is not None:
        pct = _pct(w, t.smooth_rate)
        lines.append(w["team.ratings"].format(smooth=t.smooth, ratings=t.ratings, pct=pct))
    if t.recovered_in_time:
        people = _plural(w, "people", t.recovered_in_time)
        lines.append(w["team.recovered"].format(recovered=people, wow=t.wow_in_time))
    return lines or [w["team.none"]]


def _reasons(
    w: Mapping[str, str], cfg: StoreConfig, s: Recognised, rate: float | None
) -> list[str]:
    """Why the board lists `s`, in the language: the reasons of rules/recognition.py (in
    English word for word), from the same figures; `rate` is the store's share of top
    ratings."""
    out = []
    if rate is not None and above_store(s.smooth, s.ratings, rate):
        own, store = _pct(w, s.smooth / s.ratings), _pct(w, rate)
        out.append(w["reason.top"].format(smooth=s.smooth, ratings=s.ratings, own=own, store=store))
    window = w["window"].format(window=cfg.window_text)
    if s.wow_cases:
        people = _plural(w, "people", len(s.wow_cases))
        codes = _codes(w, s.wow_cases)
        out.append(w["reason.wow"].format(people=people, window=window, codes=codes))
    if s.recovered_cases:
        people = _plural(w, "people_more" if s.wow_cases else "people", len(s.recovered_cases))
        codes = _codes(w, s.recovered_cases)
        out.append(w["reason.fixed"].format(people=people, window=window, codes=codes))
    return [r[:REASON_MAX] for r in out]


def _codes(w: Mapping[str, str], codes: tuple[str, ...]) -> str:
    shown = ", ".join(codes[:_CODES_SHOWN])
    rest = len(codes) - _CODES_SHOWN
    if rest > 0:
        shown = w["codes_rest.one" if rest == 1 else "codes_rest.other"].format(codes=shown, n=rest)
    return w["codes.one" if len(codes) == 1 else "codes.other"].format(codes=shown)


def next_week_risk(
    storage: Store, cfg: StoreConfig, store: str, span: Period, lang: str
) -> list[str]:
    """The three riskiest hours of the week after `span` (aggregator/risk.py, as the
    dashboard shows them), each in one line in the language: in English the forecast's own
    line, in another language the same figures in its words."""
    top = risk.next_week(storage, cfg, store, span.until - 1)["top"]
    if lang == "en":
        return [str(slot["reason"]) for slot in top]
    return [risk_line(TEXTS[lang], slot) for slot in top]


def risk_line(w: Mapping[str, str], slot: Mapping[str, Any]) -> str:
    """One of next week's riskiest hours (an item of risk.next_week's `top`) in the words of
    `w`, as rules/forecast.py `reason` writes it in English."""
    wd = WEEKDAYS.index(slot["weekday"])
    day, when, days = (w[key].split(",")[wd] for key in ("risk.day", "risk.when", "risk.days"))
    hour = int(slot["hour"])
    expected = f"{slot['expected']:.1f}".replace(".", w["decimal"])
    head = w["risk.head"].format(when=when, start=f"{hour:02d}:00", end=f"{hour + 1:02d}:00",
                                 expected=expected)  # fmt: skip
    seen = int(slot["days"])
    key = "risk.seen_none" if seen == 0 else "risk.seen_one" if seen == 1 else "risk.seen"
    return w[key].format(head=head, day=day, days=days, seen=seen, breakdowns=slot["breakdowns"])


def _plural(w: Mapping[str, str], key: str, n: int) -> str:
    return w[f"{key}.one" if n == 1 else f"{key}.other"].format(n=n)


def _pct(w: Mapping[str, str], share: float) -> str:
    return w["pct"].format(n=round(100 * share))


def _date(w: Mapping[str, str], day: date, year: bool = False) -> str:
    return w["date_year" if year else "date"].format(
        weekday=w["days"].split()[day.weekday()],
        day=day.day,
        month=w["months"].split()[day.month - 1],
        year=day.year,
    )


def _time(w: Mapping[str, str], cfg: StoreConfig, unix_s: int | None) -> str:
    """A time on the store's clock, in the language: "Tue 17 Nov 10:20"."""
    if unix_s is None:
        return _NONE
    t = datetime.fromtimestamp(unix_s, cfg.tz)
    return w["time"].format(date=_date(w, t.date()), time=f"{t:%H:%M}")


def _period_name(w: Mapping[str, str], span: Period) -> str:
    """The period as the subject names it: "week 48", "Sun 22 Nov"."""
    if span.kind == "week":
        return w["week"].format(week=span.first.isocalendar().week)
    return _date(w, span.first)


def _period_span(w: Mapping[str, str], span: Period) -> str:
    """The period in full: "week 48, Mon 16 Nov to Sun 22 Nov 2026", "Sun 22 Nov 2026"."""
    if span.kind == "week":
        first, last = _date(w, span.first), _date(w, span.last, year=True)
        return w["week_span"].format(week=span.first.isocalendar().week, first=first, last=last)
    return _date(w, span.first, True)


_ENV = mail_templates(_TEMPLATES)
