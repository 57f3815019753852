"""Every text an alert message is made of, in each language the host writes to people.

One catalogue per language code, each with the same keys (a test holds them together). The
values are `str.format` patterns; the placeholders a message may use are `{store}`, `{case}`,
`{station}`, `{device}`, `{deadline}` (the store's local time), `{left}` (the time from the
alert to the deadline), `{where}` (the kiosk, or the whole store) and `{type}`. The words the
kiosk shows ("Let us make it right?", "Yes, wow!") are quoted as the kiosk's own
texts in firmware/texts_*.py say them, spelt out in full.

Per alert type: `TYPE.subject` (the e-mail's subject, one line), `TYPE.headline` (the first
line of the message and a chat card's title) and `TYPE.advice` (what to do next). An alert
type the catalogue does not know is written with the `other.*` texts.
"""

from __future__ import annotations

from typing import Final

DEFAULT_LANGUAGE: Final = "en"

# Alert types with texts of their own (mqtt_schemas/schemas/alert.json).
CASE_TYPES: Final = ("case_opened", "deadline_near", "breached", "escalated", "unconfirmed")
KIOSK_TYPES: Final = ("seq_regression", "kiosk_offline", "outbox_filling")
STORE_TYPES: Final = ("negative_surge", "praise")
TYPES: Final = (*CASE_TYPES, *STORE_TYPES, *KIOSK_TYPES)

CATALOGUES: Final[dict[str, dict[str, str]]] = {
    "en": {
        "days": "Mon Tue Wed Thu Fri Sat Sun",
        "months": "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec",
        "date": "{weekday} {day} {month} {time}",
        "severity.info": "Info",
        "severity.warning": "Warning",
        "severity.critical": "Critical",
        "label.case": "Case code",
        "label.store": "Store",
        "label.station": "Station",
        "label.kiosk": "Kiosk",
        "label.deadline": "Deadline",
        "label.raised": "Raised",
        "label.severity": "Severity",
        "label.details": "Details",
        "label.next": "What to do",
        "link": "Open the store's dashboard",
        "footer": "Sent automatically by kiosk-host. Replies to this message are not read.",
        "where.kiosk": "at kiosk {device}",
        "where.store": "in the store",
        "case_opened.subject": (
            "[{store}] New case {case} at {station}: make it right by {deadline}"
        ),
        "case_opened.headline": "New case {case}: a customer wants it made right",
        "case_opened.advice": (
            "A customer at {station} accepted “Let us make it right?” and was given code "
            "{case}. Find out what went wrong, put it right and mark the case fixed before "
            "{deadline}; the customer then confirms on the kiosk."
        ),
        "deadline_near.subject": "[{store}] Case {case}: {left} left, until {deadline}",
        "deadline_near.headline": "Case {case}: its deadline is near",
        "deadline_near.advice": (
            "Put it right and mark case {case} fixed before {deadline}. If it is fixed "
            "already, ask the customer to confirm on the kiosk (“Yes, wow!” or “Yes”)."
        ),
        "breached.subject": "[{store}] Case {case} missed its deadline ({deadline})",
        "breached.headline": "Case {case} missed its deadline",
        "breached.advice": (
            "The window closed at {deadline} with the case still open. Put it right for the "
            "customer all the same and mark it fixed (it counts as late), then close the case "
            "on the dashboard."
        ),
        "escalated.subject": (
            "[{store}] Case {case} is not fixed yet: {left} left, until {deadline}"
        ),
        "escalated.headline": "Case {case} needs someone to step in",
        "escalated.advice": (
            "Nobody has fixed case {case} yet, and its deadline is {deadline}. Make sure someone "
            "looks after the customer now and marks the case fixed before then."
        ),
        "unconfirmed.subject": "[{store}] Case {case}: fixed, but not confirmed in time",
        "unconfirmed.headline": "Case {case} was not confirmed by the customer",
        "unconfirmed.advice": (
            "The case was marked fixed, but the customer did not confirm it before {deadline}. "
            "Check with the customer if you can, then close the case on the dashboard."
        ),
        "negative_surge.subject": "[{store}] Many low ratings {where}",
        "negative_surge.headline": "Many low ratings {where}",
        "negative_surge.advice": (
            "Look at the tills and the queue now: something is going wrong for customers."
        ),
        "praise.subject": "[{store}] A run of top ratings {where}",
        "praise.headline": "A run of top ratings {where}",
        "praise.advice": "Customers are happy: tell the team.",
        "seq_regression.subject": "[{store}] Kiosk {device} needs a technician",
        "seq_regression.headline": "Kiosk {device} reused an event number",
        "seq_regression.advice": (
            "Its events are kept apart and nothing is lost. Ask a technician to check the kiosk."
        ),
        "kiosk_offline.subject": "[{store}] Kiosk {device} is offline",
        "kiosk_offline.headline": "Kiosk {device} is offline",
        "kiosk_offline.advice": (
            "Check that the kiosk has power and Wi-Fi. It keeps the ratings it takes meanwhile "
            "and sends them once it is back."
        ),
        "outbox_filling.subject": "[{store}] Kiosk {device}: its outbox is filling up",
        "outbox_filling.headline": "Kiosk {device} cannot deliver its ratings",
        "outbox_filling.advice": (
            "The ratings wait on the kiosk until it reaches the broker. Check its Wi-Fi and the "
            "broker before its outbox is full."
        ),
        "other.subject": "[{store}] Alert {type}",
        "other.headline": "Alert {type}",
        "other.advice": "See the details and the store's dashboard.",
    },
    "de": {
        "days": "Mo Di Mi Do Fr Sa So",
        "months": "Jan. Feb. März Apr. Mai Juni Juli Aug. Sep. Okt. Nov. Dez.",
        "date": "{weekday}, {day}. {month} {time}",
        "severity.info": "Info",
        "severity.warning": "Warnung",
        "severity.critical": "Kritisch",
        "label.case": "Fallcode",
        "label.store": "Filiale",
        "label.station": "Station",
        "label.kiosk": "Kiosk",
        "label.deadline": "Frist",
        "label.raised": "Gemeldet",
        "label.severity": "Dringlichkeit",
        "label.details": "Einzelheiten",
        "label.next": "Was zu tun ist",
        "link": "Dashboard der Filiale öffnen",
        "footer": (
            "Automatisch von kiosk-host gesendet. Antworten auf diese Nachricht werden nicht "
            "gelesen."
        ),
        "where.kiosk": "am Kiosk {device}",
        "where.store": "in der Filiale",
        "case_opened.subject": "[{store}] Neuer Fall {case} an {station}: gutmachen bis {deadline}",
        "case_opened.headline": "Neuer Fall {case}: ein Kunde möchte, dass wir es gutmachen",
        "case_opened.advice": (
            "Ein Kunde an {station} hat „Dürfen wir es gutmachen?“ angenommen und den Code "
            "{case} erhalten. Finden Sie heraus, was schiefging, machen Sie es gut und "
            "markieren Sie den Fall vor {deadline} als erledigt; der Kunde bestätigt es dann "
            "am Kiosk."
        ),
        "deadline_near.subject": "[{store}] Fall {case}: noch {left}, bis {deadline}",
        "deadline_near.headline": "Fall {case}: die Frist läuft bald ab",
        "deadline_near.advice": (
            "Machen Sie es gut und markieren Sie den Fall {case} vor {deadline} als erledigt. "
            "Ist er schon erledigt, bitten Sie den Kunden, es am Kiosk zu bestätigen "
            "(„Ja, wow!“ oder „Ja“)."
        ),
        "breached.subject": "[{store}] Fall {case} hat seine Frist verpasst ({deadline})",
        "breached.headline": "Fall {case} hat seine Frist verpasst",
        "breached.advice": (
            "Die Frist endete am {deadline}, und der Fall war noch offen. Machen Sie es für den "
            "Kunden trotzdem gut und markieren Sie ihn als erledigt (er zählt als verspätet); "
            "schließen Sie den Fall dann im Dashboard."
        ),
        "escalated.subject": (
            "[{store}] Fall {case} ist noch nicht erledigt: noch {left}, bis {deadline}"
        ),
        "escalated.headline": "Fall {case}: bitte eingreifen",
        "escalated.advice": (
            "Niemand hat den Fall {case} bisher erledigt, und seine Frist endet am {deadline}. "
            "Sorgen Sie dafür, dass sich jetzt jemand um den Kunden kümmert und den Fall vorher "
            "als erledigt markiert."
        ),
        "unconfirmed.subject": "[{store}] Fall {case}: erledigt, aber nicht rechtzeitig bestätigt",
        "unconfirmed.headline": "Fall {case} wurde vom Kunden nicht bestätigt",
        "unconfirmed.advice": (
            "Der Fall wurde als erledigt markiert, aber der Kunde hat es vor {deadline} nicht "
            "bestätigt. Fragen Sie beim Kunden nach, wenn möglich, und schließen Sie den Fall "
            "dann im Dashboard."
        ),
        "negative_surge.subject": "[{store}] Viele schlechte Bewertungen {where}",
        "negative_surge.headline": "Viele schlechte Bewertungen {where}",
        "negative_surge.advice": (
            "Sehen Sie jetzt nach Kassen und Warteschlange: etwas läuft für die Kunden schief."
        ),
        "praise.subject": "[{store}] Eine Serie von Bestbewertungen {where}",
        "praise.headline": "Eine Serie von Bestbewertungen {where}",
        "praise.advice": "Die Kunden sind zufrieden: sagen Sie es dem Team.",
        "seq_regression.subject": "[{store}] Kiosk {device} braucht einen Techniker",
        "seq_regression.headline": "Kiosk {device} hat eine Ereignisnummer wiederverwendet",
        "seq_regression.advice": (
            "Seine Ereignisse werden getrennt aufbewahrt, nichts geht verloren. Bitten Sie einen "
            "Techniker, den Kiosk zu prüfen."
        ),
        "kiosk_offline.subject": "[{store}] Kiosk {device} ist offline",
        "kiosk_offline.headline": "Kiosk {device} ist offline",
        "kiosk_offline.advice": (
            "Prüfen Sie Strom und WLAN des Kiosks. Die Bewertungen, die er inzwischen "
            "aufnimmt, behält er und sendet sie, sobald er wieder verbunden ist."
        ),
        "outbox_filling.subject": "[{store}] Kiosk {device}: sein Ausgang füllt sich",
        "outbox_filling.headline": "Kiosk {device} kann seine Bewertungen nicht zustellen",
        "outbox_filling.advice": (
            "Die Bewertungen warten auf dem Kiosk, bis er den Broker erreicht. Prüfen Sie sein "
            "WLAN und den Broker, bevor sein Ausgang voll ist."
        ),
        "other.subject": "[{store}] Meldung {type}",
        "other.headline": "Meldung {type}",
        "other.advice": "Siehe die Einzelheiten und das Dashboard der Filiale.",
    },
    # French typography: a narrow no-break space (U+202F) before : ; ! ? and inside « », so
    # that a line never breaks before the sign.
    "fr": {
        "days": "lun. mar. mer. jeu. ven. sam. dim.",
        "months": "janv. févr. mars avr. mai juin juil. août sept. oct. nov. déc.",
        "date": "{weekday} {day} {month} {time}",
        "severity.info": "Info",
        "severity.warning": "Avertissement",
        "severity.critical": "Critique",
        "label.case": "Code du cas",
        "label.store": "Magasin",
        "label.station": "Poste",
        "label.kiosk": "Borne",
        "label.deadline": "Échéance",
        "label.raised": "Signalé",
        "label.severity": "Gravité",
        "label.details": "Détails",
        "label.next": "Que faire",
        "link": "Ouvrir le tableau de bord du magasin",
        "footer": (
            "Envoyé automatiquement par kiosk-host. Les réponses à ce message ne sont pas lues."
        ),
        "where.kiosk": "à la borne {device}",
        "where.store": "dans le magasin",
        "case_opened.subject": (
            "[{store}] Nouveau cas {case} au poste {station}\u202f: à régler avant {deadline}"
        ),
        "case_opened.headline": (
            "Nouveau cas {case}\u202f: un client attend que nous arrangions cela"
        ),
        "case_opened.advice": (
            "Un client au poste {station} a accepté "
            "«\u202fPouvons-nous arranger cela\u202f?\u202f» et a reçu le code {case}. Trouvez ce "
            "qui n'a pas été, arrangez-le et marquez le cas comme réglé avant {deadline}\u202f; le "
            "client le confirme ensuite sur la borne."
        ),
        "deadline_near.subject": "[{store}] Cas {case}\u202f: encore {left}, jusqu'à {deadline}",
        "deadline_near.headline": "Cas {case}\u202f: l'échéance approche",
        "deadline_near.advice": (
            "Arrangez-le et marquez le cas {case} comme réglé avant {deadline}. S'il est déjà "
            "réglé, demandez au client de le confirmer sur la borne "
            "(«\u202fOui, wow\u202f!\u202f» ou «\u202fOui\u202f»)."
        ),
        "breached.subject": "[{store}] Cas {case}\u202f: échéance manquée ({deadline})",
        "breached.headline": "Cas {case}\u202f: échéance manquée",
        "breached.advice": (
            "Le délai a pris fin le {deadline} alors que le cas était encore ouvert. Arrangez "
            "tout de même les choses pour le client et marquez-le comme réglé (il compte comme "
            "en retard), puis fermez le cas dans le tableau de bord."
        ),
        "escalated.subject": (
            "[{store}] Cas {case} pas encore réglé\u202f: encore {left}, jusqu'à {deadline}"
        ),
        "escalated.headline": "Cas {case}\u202f: il faut intervenir",
        "escalated.advice": (
            "Personne n'a encore réglé le cas {case}, et son échéance est le {deadline}. Veillez "
            "à ce que quelqu'un s'occupe du client dès maintenant et marque le cas comme réglé "
            "avant."
        ),
        "unconfirmed.subject": "[{store}] Cas {case}\u202f: réglé, mais pas confirmé à temps",
        "unconfirmed.headline": "Cas {case}\u202f: pas confirmé par le client",
        "unconfirmed.advice": (
            "Le cas a été marqué comme réglé, mais le client ne l'a pas confirmé avant "
            "{deadline}. Vérifiez auprès du client si possible, puis fermez le cas dans le "
            "tableau de bord."
        ),
        "negative_surge.subject": "[{store}] Beaucoup de mauvaises notes {where}",
        "negative_surge.headline": "Beaucoup de mauvaises notes {where}",
        "negative_surge.advice": (
            "Regardez dès maintenant les caisses et la file d'attente\u202f: quelque chose ne va "
            "pas pour les clients."
        ),
        "praise.subject": "[{store}] Une série de notes maximales {where}",
        "praise.headline": "Une série de notes maximales {where}",
        "praise.advice": "Les clients sont contents\u202f: dites-le à l'équipe.",
        "seq_regression.subject": "[{store}] La borne {device} a besoin d'un technicien",
        "seq_regression.headline": "La borne {device} a réutilisé un numéro d'événement",
        "seq_regression.advice": (
            "Ses événements sont gardés à part et rien n'est perdu. Demandez à un technicien de "
            "vérifier la borne."
        ),
        "kiosk_offline.subject": "[{store}] La borne {device} est hors ligne",
        "kiosk_offline.headline": "La borne {device} est hors ligne",
        "kiosk_offline.advice": (
            "Vérifiez l'alimentation et le Wi-Fi de la borne. Elle garde les notes reçues entre-"
            "temps et les envoie dès son retour."
        ),
        "outbox_filling.subject": "[{store}] Borne {device}\u202f: sa file d'envoi se remplit",
        "outbox_filling.headline": "La borne {device} ne parvient pas à envoyer ses notes",
        "outbox_filling.advice": (
            "Les notes attendent sur la borne jusqu'à ce qu'elle joigne le broker. Vérifiez son "
            "Wi-Fi et le broker avant que sa file d'envoi soit pleine."
        ),
        "other.subject": "[{store}] Alerte {type}",
        "other.headline": "Alerte {type}",
        "other.advice": "Voir les détails et le tableau de bord du magasin.",
    },
    "es": {
        "days": "lun mar mié jue vie sáb dom",
        "months": "ene feb mar abr may jun jul ago sept oct nov dic",
        "date": "{weekday} {day} {month} {time}",
        "severity.info": "Info",
        "severity.warning": "Aviso",
        "severity.critical": "Crítico",
        "label.case": "Código del caso",
        "label.store": "Tienda",
        "label.station": "Puesto",
        "label.kiosk": "Quiosco",
        "label.deadline": "Plazo",
        "label.raised": "Aviso emitido",
        "label.severity": "Gravedad",
        "label.details": "Detalles",
        "label.next": "Qué hacer",
        "link": "Abrir el panel de la tienda",
        "footer": (
            "Enviado automáticamente por kiosk-host. Las respuestas a este mensaje no se leen."
        ),
        "where.kiosk": "en el quiosco {device}",
        "where.store": "en la tienda",
        "case_opened.subject": (
            "[{store}] Nuevo caso {case} en {station}: arreglarlo antes del {deadline}"
        ),
        "case_opened.headline": "Nuevo caso {case}: un cliente espera que lo arreglemos",
        "case_opened.advice": (
            "Un cliente en {station} aceptó «¿Nos deja arreglarlo?» y recibió el código {case}. "
            "Averigüe qué salió mal, arréglelo y marque el caso como resuelto antes del "
            "{deadline}; después el cliente lo confirma en el quiosco."
        ),
        "deadline_near.subject": "[{store}] Caso {case}: quedan {left}, hasta el {deadline}",
        "deadline_near.headline": "Caso {case}: el plazo está por vencer",
        "deadline_near.advice": (
            "Arréglelo y marque el caso {case} como resuelto antes del {deadline}. Si ya está "
            "resuelto, pida al cliente que lo confirme en el quiosco («¡Sí, wow!» o «Sí»)."
        ),
        "breached.subject": "[{store}] El caso {case} venció su plazo ({deadline})",
        "breached.headline": "El caso {case} venció su plazo",
        "breached.advice": (
            "El plazo terminó el {deadline} con el caso todavía abierto. Arréglelo igualmente "
            "para el cliente y márquelo como resuelto (cuenta como tardío); después cierre el "
            "caso en el panel."
        ),
        "escalated.subject": (
            "[{store}] El caso {case} aún no está resuelto: quedan {left}, hasta el {deadline}"
        ),
        "escalated.headline": "Caso {case}: hace falta intervenir",
        "escalated.advice": (
            "Nadie ha resuelto todavía el caso {case} y su plazo vence el {deadline}. Asegúrese "
            "de que alguien atienda ahora al cliente y marque el caso como resuelto antes."
        ),
        "unconfirmed.subject": "[{store}] Caso {case}: resuelto, pero no confirmado a tiempo",
        "unconfirmed.headline": "El cliente no confirmó el caso {case}",
        "unconfirmed.advice": (
            "El caso se marcó como resuelto, pero el cliente no lo confirmó antes del "
            "{deadline}. Consulte con el cliente si puede y después cierre el caso en el panel."
        ),
        "negative_surge.subject": "[{store}] Muchas valoraciones bajas {where}",
        "negative_surge.headline": "Muchas valoraciones bajas {where}",
        "negative_surge.advice": (
            "Revise ahora las cajas y la cola: algo está saliendo mal para los clientes."
        ),
        "praise.subject": "[{store}] Una racha de valoraciones máximas {where}",
        "praise.headline": "Una racha de valoraciones máximas {where}",
        "praise.advice": "Los clientes están contentos: díganselo al equipo.",
        "seq_regression.subject": "[{store}] El quiosco {device} necesita un técnico",
        "seq_regression.headline": "El quiosco {device} repitió un número de evento",
        "seq_regression.advice": (
            "Sus eventos se guardan aparte y no se pierde nada. Pida a un técnico que revise el "
            "quiosco."
        ),
        "kiosk_offline.subject": "[{store}] El quiosco {device} está desconectado",
        "kiosk_offline.headline": "El quiosco {device} está desconectado",
        "kiosk_offline.advice": (
            "Compruebe la alimentación y el wifi del quiosco. Guarda las valoraciones que "
            "reciba mientras tanto y las envía cuando vuelva a conectarse."
        ),
        "outbox_filling.subject": "[{store}] Quiosco {device}: su cola de envío se llena",
        "outbox_filling.headline": "El quiosco {device} no consigue enviar sus valoraciones",
        "outbox_filling.advice": (
            "Las valoraciones esperan en el quiosco hasta que llegue al broker. Compruebe su "
            "wifi y el broker antes de que se llene su cola de envío."
        ),
        "other.subject": "[{store}] Alerta {type}",
        "other.headline": "Alerta {type}",
        "other.advice": "Vea los detalles y el panel de la tienda.",
    },
    # Dutch in the informal "je" form, as Dutch retail software addresses staff; mostly
    # imperatives, which read the same in either form.
    "nl": {
        "days": "ma di wo do vr za zo",
        "months": "jan feb mrt apr mei jun jul aug sep okt nov dec",
        "date": "{weekday} {day} {month} {time}",
        "severity.info": "Info",
        "severity.warning": "Waarschuwing",
        "severity.critical": "Kritiek",
        "label.case": "Zaakcode",
        "label.store": "Winkel",
        "label.station": "Werkplek",
        "label.kiosk": "Kiosk",
        "label.deadline": "Deadline",
        "label.raised": "Gemeld",
        "label.severity": "Urgentie",
        "label.details": "Details",
        "label.next": "Wat te doen",
        "link": "Dashboard van de winkel openen",
        "footer": (
            "Automatisch verstuurd door kiosk-host. Antwoorden op dit bericht worden niet gelezen."
        ),
        "where.kiosk": "bij kiosk {device}",
        "where.store": "in de winkel",
        "case_opened.subject": (
            "[{store}] Nieuwe zaak {case} bij {station}: goedmaken vóór {deadline}"
        ),
        "case_opened.headline": "Nieuwe zaak {case}: een klant wil dat we het goedmaken",
        "case_opened.advice": (
            "Een klant bij {station} koos “Ja” bij “Mogen we het goedmaken?” en kreeg code "
            "{case}. Zoek uit wat er misging, maak het goed en markeer de zaak vóór {deadline} "
            "als opgelost; daarna bevestigt de klant het op de kiosk."
        ),
        "deadline_near.subject": "[{store}] Zaak {case}: nog {left}, tot {deadline}",
        "deadline_near.headline": "Zaak {case}: de deadline nadert",
        "deadline_near.advice": (
            "Maak het goed en markeer zaak {case} vóór {deadline} als opgelost. Is het al "
            "opgelost, vraag de klant dan om het op de kiosk te bevestigen (“Ja, wow!” of “Ja”)."
        ),
        "breached.subject": "[{store}] Zaak {case} heeft de deadline gemist ({deadline})",
        "breached.headline": "Zaak {case} heeft de deadline gemist",
        "breached.advice": (
            "De termijn liep af op {deadline} en de zaak stond nog open. Maak het toch goed "
            "voor de klant en markeer de zaak als opgelost (die telt als te laat); sluit de zaak "
            "daarna in het dashboard."
        ),
        "escalated.subject": (
            "[{store}] Zaak {case} is nog niet opgelost: nog {left}, tot {deadline}"
        ),
        "escalated.headline": "Zaak {case}: iemand moet ingrijpen",
        "escalated.advice": (
            "Niemand heeft zaak {case} nog opgelost, en de deadline is {deadline}. Zorg dat "
            "iemand de klant nu helpt en de zaak voor die tijd als opgelost markeert."
        ),
        "unconfirmed.subject": "[{store}] Zaak {case}: opgelost, maar niet op tijd bevestigd",
        "unconfirmed.headline": "Zaak {case} is niet bevestigd door de klant",
        "unconfirmed.advice": (
            "De zaak is als opgelost gemarkeerd, maar de klant heeft dat niet vóór {deadline} "
            "bevestigd. Vraag het de klant als dat kan, en sluit de zaak daarna in het dashboard."
        ),
        "negative_surge.subject": "[{store}] Veel slechte beoordelingen {where}",
        "negative_surge.headline": "Veel slechte beoordelingen {where}",
        "negative_surge.advice": (
            "Kijk nu bij de kassa's en de rij: er gaat iets mis voor klanten."
        ),
        "praise.subject": "[{store}] Een reeks topbeoordelingen {where}",
        "praise.headline": "Een reeks topbeoordelingen {where}",
        "praise.advice": "Klanten zijn tevreden: geef het door aan het team.",
        "seq_regression.subject": "[{store}] Kiosk {device} heeft een technicus nodig",
        "seq_regression.headline": "Kiosk {device} heeft een gebeurtenisnummer opnieuw gebruikt",
        "seq_regression.advice": (
            "Zijn gebeurtenissen worden apart bewaard en er gaat niets verloren. Vraag een "
            "technicus om de kiosk na te kijken."
        ),
        "kiosk_offline.subject": "[{store}] Kiosk {device} is offline",
        "kiosk_offline.headline": "Kiosk {device} is offline",
        "kiosk_offline.advice": (
            "Controleer of de kiosk stroom en wifi heeft. De beoordelingen die hij intussen "
            "krijgt, bewaart hij en verstuurt hij zodra hij weer verbinding heeft."
        ),
        "outbox_filling.subject": "[{store}] Kiosk {device}: de verzendwachtrij loopt vol",
        "outbox_filling.headline": "Kiosk {device} kan zijn beoordelingen niet afleveren",
        "outbox_filling.advice": (
            "De beoordelingen wachten op de kiosk tot hij de broker bereikt. Controleer de wifi "
            "van de kiosk en de broker voordat de wachtrij vol is."
        ),
        "other.subject": "[{store}] Melding {type}",
        "other.headline": "Melding {type}",
        "other.advice": "Bekijk de details en het dashboard van de winkel.",
    },
}
