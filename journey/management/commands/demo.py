"""Load a demo that looks real. Idempotent: running it again changes nothing.

A car built to order in Spain and shipped to a Bristol showroom, a fitted kitchen,
two customers (each sees only their own journeys), a staff user, and partners whose
API key is printed once, when it is made.
"""

import io
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from allauth.account.models import EmailAddress
from django.core.management.base import BaseCommand
from django.db import transaction
from django.db.models import Value
from django.db.models.functions import Coalesce, Least
from django.utils import timezone
from PIL import Image, ImageDraw

from accounts.mfa import totp_activate
from accounts.models import User
from accounts.roles import roles_setup
from accounts.services import customer_create
from integrations.models import Partner, StatusMapping
from integrations.services import partner_key_create
from journey.eta import eta_recompute
from journey.models import (
    Agreement,
    AgreementKind,
    Appointment,
    Checkpoint,
    CustomerTask,
    EtaCause,
    EtaEstimate,
    EventSource,
    Journey,
    JourneyTemplate,
    Message,
    PromisedItem,
    ShipmentLeg,
    StageDefinition,
)
from journey.photos import photo_add
from journey.services import journey_create, journey_record_milestone
from notifications.models import Channel, Notification, NotificationState

PASSWORD = "milepost-demo"  # noqa: S105 - the demo's published password
CUSTOMER = "alex@example.com"
SECOND_CUSTOMER = "sam@example.com"
THIRD_CUSTOMER = "jo@example.com"
STAFF = "staff@milepost.example"
CAR_REFERENCE = "MP-CAR7X2"
KITCHEN_REFERENCE = "MP-KTN4Q8"
BROADBAND_REFERENCE = "MP-BBD3N5"

CAR_STAGES = [
    ("order_confirmed", "Order confirmed", "We have your order and your deposit.", 2),
    (
        "production_scheduled",
        "Production scheduled",
        "Your car has a build slot at the factory in Valencia.",
        10,
    ),
    (
        "body_shop",
        "Body shop",
        "The body is welded and checked for accuracy, to a tenth of a millimetre.",
        3,
    ),
    ("paint", "Paint", "Five coats: primer, two coats of colour and two of clear lacquer.", 3),
    ("assembly", "Assembly", "Engine, interior, wheels and the options you chose are fitted.", 4),
    ("quality_check", "Quality check", "A road test and a 300-point inspection.", 2),
    ("ready_to_ship", "Ready to ship", "Your car is finished and waiting for its transport.", 2),
    (
        "in_transit",
        "On its way",
        "By truck to Santander, by ship to Portbury, by truck to Bristol.",
        6,
    ),
    (
        "at_showroom",
        "At the showroom",
        "Your car is being prepared for you: cleaned, checked, fuelled.",
        3,
    ),
    ("handover", "Handover", "You collect your car and drive it home.", 1),
]
KITCHEN_STAGES = [
    ("order_confirmed", "Order confirmed", "We have your order and your design.", 2),
    ("survey", "Measuring visit", "Our surveyor measures the room to the millimetre.", 5),
    ("manufacturing", "Made to measure", "Your cabinets are made to the surveyed sizes.", 21),
    ("delivery", "Delivery", "Everything arrives in one delivery, checked against your order.", 2),
    ("fitting", "Fitting", "Our fitters install the cabinets and appliances.", 4),
    ("worktops", "Worktops", "The stone worktops are templated, cut and fitted.", 10),
    ("signoff", "Final check", "We walk through the finished kitchen with you.", 1),
]
BROADBAND_STAGES = [
    (
        "order_confirmed",
        "Order confirmed",
        "We have your order and have checked that your home can get full fibre.",
        1,
    ),
    ("line_check", "Line check", "We test the line to your street and reserve your port.", 3),
    (
        "engineer_booked",
        "Engineer booked",
        "An engineer's visit is booked: your appointment below says when.",
        5,
    ),
    (
        "installation",
        "Installation",
        "The engineer brings the fibre into your home and fits the socket and the router.",
        1,
    ),
    ("connected", "Connected", "Your line is live: you are online at full speed.", 1),
]
# The stages in Spanish (the profile's other language): label and explanation.
SPANISH_STAGES = {
    "car-built-to-order": {
        "order_confirmed": ("Pedido confirmado", "Tenemos su pedido y su depósito."),
        "production_scheduled": (
            "Producción programada",
            "Su coche tiene un hueco de fabricación en la planta de Valencia.",
        ),
        "body_shop": (
            "Carrocería",
            "La carrocería se suelda y se comprueba su precisión, a la décima de milímetro.",
        ),
        "paint": ("Pintura", "Cinco capas: imprimación, dos de color y dos de barniz."),
        "assembly": (
            "Montaje",
            "Se montan el motor, el interior, las ruedas y las opciones que eligió.",
        ),
        "quality_check": (
            "Control de calidad",
            "Una prueba en carretera y una inspección de 300 puntos.",
        ),
        "ready_to_ship": ("Listo para enviar", "Su coche está terminado y espera su transporte."),
        "in_transit": (
            "En camino",
            "En camión a Santander, en barco a Portbury y en camión a Bristol.",
        ),
        "at_showroom": (
            "En el concesionario",
            "Estamos preparando su coche: limpio, revisado y con el depósito lleno.",
        ),
        "handover": ("Entrega", "Recoge su coche y se lo lleva a casa."),
    },
    "broadband-install": {
        "order_confirmed": (
            "Pedido confirmado",
            "Tenemos su pedido y hemos comprobado que su casa puede tener fibra.",
        ),
        "line_check": (
            "Comprobación de la línea",
            "Probamos la línea de su calle y reservamos su puerto.",
        ),
        "engineer_booked": (
            "Visita del técnico reservada",
            "La visita del técnico está reservada: su cita, más abajo, dice cuándo.",
        ),
        "installation": (
            "Instalación",
            "El técnico lleva la fibra a su casa y coloca la roseta y el router.",
        ),
        "connected": ("Conectado", "Su línea funciona: ya navega a toda velocidad."),
    },
    "fitted-kitchen": {
        "order_confirmed": ("Pedido confirmado", "Tenemos su pedido y su diseño."),
        "survey": ("Visita de medición", "Nuestro técnico mide la estancia al milímetro."),
        "manufacturing": (
            "Fabricación a medida",
            "Sus muebles se fabrican con las medidas tomadas.",
        ),
        "delivery": ("Entrega", "Todo llega en una sola entrega, revisado contra su pedido."),
        "fitting": (
            "Instalación",
            "Nuestros instaladores montan los muebles y los electrodomésticos.",
        ),
        "worktops": ("Encimeras", "Las encimeras de piedra se plantillan, se cortan y se colocan."),
        "signoff": ("Revisión final", "Repasamos con usted la cocina terminada."),
    },
}
# The factory's own status codes, turned into our stages (what partners send).
FACTORY_CODES = {
    "ORD-OK": "order_confirmed",
    "SLOT": "production_scheduled",
    "BIW": "body_shop",
    "PNT-IN": "paint",
    "ASSY": "assembly",
    "QC-PASS": "quality_check",
    "GATE-RDY": "ready_to_ship",
}
CARRIER_CODES = {
    "PICKED-UP": "in_transit",
    "DELIVERED-DLR": "at_showroom",
    "HANDED-OVER": "handover",
}


@dataclass
class Summary:
    created: bool
    keys: list[tuple[str, str]]
    staff_codes: list[str]


def _spanish(template_key: str, stage_key: str) -> dict[str, dict[str, str]]:
    label, explanation = SPANISH_STAGES[template_key][stage_key]
    return {"es": {"label": label, "explanation": explanation}}


def _template(key: str, name: str, stages: list[tuple[str, str, str, int]]) -> JourneyTemplate:
    template, created = JourneyTemplate.objects.get_or_create(key=key, defaults={"name": name})
    if created:
        StageDefinition.objects.bulk_create(
            StageDefinition(
                template=template,
                position=position,
                key=stage_key,
                label=label,
                explanation=explanation,
                translations=_spanish(key, stage_key),
                expected_duration=timedelta(days=days),
                # The carrier's leg ETAs decide when the car arrives (journey/eta.py).
                shipping=stage_key == "in_transit",
            )
            for position, (stage_key, label, explanation, days) in enumerate(stages, start=1)
        )
    return template


def _staff_driven(
    owner: User,
    template: JourneyTemplate,
    now: datetime,
    *,
    title: str,
    reference: str,
    days: tuple[int, int],
    reached: list[tuple[str, int]],
) -> Journey:
    """A journey started ``days[0]`` ago and promised ``days[1]`` from now, under a
    fixed reference, whose ``reached`` stages staff recorded (key, days ago)."""
    journey = journey_create(
        template=template,
        owner=owner,
        title=title,
        started_at=now - timedelta(days=days[0]),
        promised_date=(now + timedelta(days=days[1])).date(),
    )
    Journey.objects.filter(pk=journey.pk).update(reference=reference)
    journey.refresh_from_db()
    _eta_history_from(journey, journey.started_at)
    for stage_key, days_ago in reached:
        _record(
            journey,
            stage_key,
            now - timedelta(days=days_ago),
            source=EventSource.STAFF,
            source_name="Demo",
        )
    return journey


def _eta_history_from(journey: Journey, when: datetime) -> None:
    """The prediction made when the journey was created, dated then (the demo builds its
    journeys in one go: undated, "How this date has moved" listed every change today)."""
    EtaEstimate.objects.filter(journey=journey).update(computed_at=when)


def _record(journey: Journey, stage_key: str, occurred_at: datetime, **kwargs: object) -> None:
    """A stage reached in the past, and the predictions it changed dated when it was."""
    before = list(EtaEstimate.objects.filter(journey=journey).values_list("pk", flat=True))
    journey_record_milestone(
        journey=journey, stage_key=stage_key, occurred_at=occurred_at, **kwargs
    )
    EtaEstimate.objects.filter(journey=journey).exclude(pk__in=before).update(
        computed_at=occurred_at
    )


def _user(email: str, **profile: str) -> User:
    user = User.objects.filter(email=email).first()
    return user or customer_create(email=email, password=PASSWORD, **profile)


def factory_photo(stage: str, colour: tuple[int, int, int], caption: str) -> io.BytesIO:
    """A generated 'factory photo': a car body at the given stage, drawn with Pillow."""
    image = Image.new("RGB", (1200, 900), (58, 64, 72))
    draw = ImageDraw.Draw(image)
    # Factory hall: floor, ceiling lights, a yellow safety line.
    draw.rectangle((0, 600, 1200, 900), fill=(92, 96, 102))
    draw.rectangle((0, 740, 1200, 752), fill=(232, 190, 40))
    for x in range(80, 1200, 220):
        draw.rectangle((x, 40, x + 120, 56), fill=(240, 240, 228))
    body = colour if stage != "body_shop" else (170, 176, 182)
    # Body: lower shell and cabin.
    draw.rounded_rectangle((220, 420, 980, 600), radius=60, fill=body)
    draw.polygon([(380, 420), (470, 300), (760, 300), (870, 420)], fill=body)
    draw.polygon([(410, 415), (485, 318), (600, 318), (600, 415)], fill=(160, 200, 220))
    draw.polygon([(620, 415), (620, 318), (745, 318), (840, 415)], fill=(160, 200, 220))
    if stage in {"assembly", "quality_check", "ready_to_ship"}:
        for cx in (380, 820):
            draw.ellipse((cx - 75, 530, cx + 75, 680), fill=(28, 28, 30))
            draw.ellipse((cx - 40, 565, cx + 40, 645), fill=(190, 190, 196))
    else:
        for cx in (380, 820):
            draw.rectangle((cx - 20, 600, cx + 20, 700), fill=(240, 140, 20))
    if stage == "quality_check":
        draw.rectangle((950, 470, 990, 500), fill=(255, 244, 200))
    draw.rectangle((0, 820, 1200, 900), fill=(20, 24, 28))
    draw.text((32, 842), caption, fill=(255, 255, 255), font_size=36)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=88)
    out.seek(0)
    return out


class Command(BaseCommand):
    help = "Load the demo (idempotent) and print the demo logins."

    def handle(self, *args: object, **options: object) -> None:
        summary = self.load()
        self.stdout.write(
            self.style.SUCCESS("Demo ready." if summary.created else "Demo already loaded.")
        )
        self.stdout.write(
            f"Logins (password for all: {PASSWORD}):\n"
            f"  customer         {CUSTOMER}  (the car, {CAR_REFERENCE})\n"
            f"  second customer  {SECOND_CUSTOMER}  (a fitted kitchen, {KITCHEN_REFERENCE};"
            " reads in Spanish)\n"
            f"  third customer   {THIRD_CUSTOMER}  (a broadband install, {BROADBAND_REFERENCE})\n"
            f"  staff            {STAFF}  (admin at /admin/, with a second factor:"
            f" the code from `python manage.py totp_code {STAFF}`"
            + (
                f", or a recovery code: {', '.join(summary.staff_codes[:3])})"
                if summary.staff_codes
                else ")"
            )
        )
        for partner, key in summary.keys:
            self.stdout.write(f"  API key of {partner} (shown once): {key}")
        if not summary.keys:
            self.stdout.write(
                "  Partner API keys were printed when first made; make another with "
                "`python manage.py partner_key create iberia-motor-works`."
            )

    @transaction.atomic
    def load(self) -> Summary:
        now = timezone.now()
        car_template = _template("car-built-to-order", "Car built to order", CAR_STAGES)
        kitchen_template = _template("fitted-kitchen", "Fitted kitchen", KITCHEN_STAGES)
        alex = _user(CUSTOMER, given_name="Alex", family_name="Morgan", time_zone="Europe/London")
        broadband_template = _template(
            "broadband-install", "Broadband installation", BROADBAND_STAGES
        )
        sam = _user(
            SECOND_CUSTOMER,
            given_name="Sam",
            family_name="Rivera",
            time_zone="Europe/Madrid",
            language="es",
        )
        jo = _user(THIRD_CUSTOMER, given_name="Jo", family_name="Patel", time_zone="Europe/London")
        staff_codes: list[str] = []
        roles_setup()  # the staff groups "Agents" and "Managers" (accounts.roles)
        if not User.objects.filter(email=STAFF).exists():
            staff = User.objects.create_superuser(email=STAFF, password=PASSWORD)
            EmailAddress.objects.create(user=staff, email=STAFF, verified=True, primary=True)
            # Staff must use two-factor authentication; the demo staff gets it ready.
            _secret, staff_codes = totp_activate(user=staff)

        factory, _ = Partner.objects.get_or_create(
            slug="iberia-motor-works", defaults={"name": "Iberia Motor Works"}
        )
        carrier, _ = Partner.objects.get_or_create(
            slug="northsea-roro", defaults={"name": "NorthSea Ro-Ro Logistics"}
        )
        for partner, codes in ((factory, FACTORY_CODES), (carrier, CARRIER_CODES)):
            for code, stage_key in codes.items():
                StatusMapping.objects.get_or_create(
                    partner=partner, code=code, defaults={"stage_key": stage_key}
                )
        keys = []
        for partner in (factory, carrier):
            if not partner.api_keys.exists():
                _key, plain = partner_key_create(partner=partner, name="demo")
                keys.append((partner.name, plain))

        created = False
        if not Journey.objects.filter(reference=CAR_REFERENCE).exists():
            self._car(alex, car_template, factory, carrier, now)
            created = True
        if not Journey.objects.filter(reference=KITCHEN_REFERENCE).exists():
            self._kitchen(sam, kitchen_template, now)
            created = True
        if not Journey.objects.filter(reference=BROADBAND_REFERENCE).exists():
            self._broadband(jo, broadband_template, now)
            created = True
        # The demo's history was "delivered" when it happened: nobody is emailed while it
        # loads, and the first live update is not held back as part of a digest.
        # (The photos are "taken" now, so their messages are dated a day back.)
        when = Least(Coalesce("occurred_at", "created_at"), Value(now - timedelta(days=1)))
        history = Notification.objects.filter(created_at__gte=now)  # written by this load
        history_ids = list(history.values_list("pk", flat=True))
        history.update(
            state=NotificationState.SENT,
            sent_at=when,
            scheduled_at=when,
            created_at=when,
            occurred_at=when,
        )
        # The customer has read all but the latest in the portal's notification centre.
        centre = Notification.objects.filter(pk__in=history_ids, channel=Channel.INAPP)
        latest = list(centre.order_by("-created_at", "-id").values_list("pk", flat=True)[:2])
        centre.exclude(pk__in=latest).update(read_at=now)
        return Summary(created=created, keys=keys, staff_codes=staff_codes)

    def _car(
        self,
        owner: User,
        template: JourneyTemplate,
        factory: Partner,
        carrier: Partner,
        now: datetime,
    ) -> None:
        started = (now - timedelta(days=33)).replace(hour=9, minute=0, second=0, microsecond=0)
        journey = journey_create(
            template=template,
            owner=owner,
            title="Your Aurora GT, Deep Ocean Blue",
            started_at=started,
            promised_date=(now + timedelta(days=9)).date(),
        )
        Journey.objects.filter(pk=journey.pk).update(reference=CAR_REFERENCE)
        journey.refresh_from_db()
        factory.journeys.add(journey)
        carrier.journeys.add(journey)
        history = [
            ("order_confirmed", 33, EventSource.STAFF, ""),
            ("production_scheduled", 31, EventSource.PARTNER, ""),
            ("body_shop", 20, EventSource.PARTNER, ""),
            ("paint", 17, EventSource.PARTNER, ""),
            ("assembly", 13, EventSource.PARTNER, ""),
            ("quality_check", 9, EventSource.PARTNER, "Passed first time, with no remarks."),
            ("ready_to_ship", 7, EventSource.PARTNER, ""),
            ("in_transit", 5, EventSource.PARTNER, ""),
        ]
        _eta_history_from(journey, started)
        for stage_key, days_ago, source, message in history:
            _record(
                journey,
                stage_key,
                (now - timedelta(days=days_ago)).replace(hour=9, minute=40),
                source=source,
                source_name="Iberia Motor Works" if source == EventSource.PARTNER else "Demo",
                message=message,
            )
        milestones = {m.stage.key: m for m in journey.milestones.select_related("stage")}
        blue = (22, 62, 120)
        for stage_key, caption in [
            ("body_shop", "Body in white, station 4"),
            ("paint", "Fresh from the paint booth"),
            ("paint", "Deep Ocean Blue, second clear coat"),
            ("assembly", "Wheels and interior fitted"),
            ("quality_check", "Road test passed"),
        ]:
            photo_add(
                journey=journey,
                milestone=milestones[stage_key],
                file=factory_photo(stage_key, blue, caption),
                caption=caption,
            )
        legs = [
            (
                "truck",
                "Transportes Levante",
                "Valencia factory",
                "39.29500",
                "-0.41600",
                "Port of Santander",
                "43.46300",
                "-3.80400",
                5,
                4,
            ),
            (
                "ship",
                "NorthSea Ro-Ro",
                "Port of Santander",
                "43.46300",
                "-3.80400",
                "Portbury Dock",
                "51.49800",
                "-2.72900",
                3,
                None,
            ),
            (
                "truck",
                "Severn Car Carriers",
                "Portbury Dock",
                "51.49800",
                "-2.72900",
                "Bristol showroom",
                "51.45400",
                "-2.58700",
                None,
                None,
            ),
        ]
        for sequence, (
            mode,
            carrier_name,
            origin,
            olat,
            olon,
            dest,
            dlat,
            dlon,
            dep,
            arr,
        ) in enumerate(legs, start=1):
            departed = (now - timedelta(days=dep)).replace(hour=7, minute=15) if dep else None
            leg = ShipmentLeg.objects.create(
                journey=journey,
                sequence=sequence,
                mode=mode,
                carrier=carrier_name,
                origin_name=origin,
                origin_lat=Decimal(olat),
                origin_lon=Decimal(olon),
                destination_name=dest,
                destination_lat=Decimal(dlat),
                destination_lon=Decimal(dlon),
                departed_at=departed,
                arrived_at=(now - timedelta(days=arr)).replace(hour=18, minute=5) if arr else None,
                eta=(now + timedelta(days=sequence - 1)).replace(
                    hour=16, minute=0, second=0, microsecond=0
                ),
            )
            if mode == "ship":
                Checkpoint.objects.bulk_create(
                    [
                        Checkpoint(
                            leg=leg,
                            occurred_at=departed + timedelta(hours=5),
                            location_name="Port of Santander",
                            lat=Decimal("43.46300"),
                            lon=Decimal("-3.80400"),
                            description="Loaded and sailed",
                        ),
                        Checkpoint(
                            leg=leg,
                            occurred_at=now - timedelta(hours=20),
                            location_name="Bay of Biscay",
                            lat=Decimal("46.10000"),
                            lon=Decimal("-5.20000"),
                            description="At sea, on schedule",
                        ),
                    ]
                )
        # The carriers' leg ETAs now move the prediction.
        eta_recompute(journey=journey, cause=EtaCause.LEG_ETA)
        CustomerTask.objects.bulk_create(
            [
                CustomerTask(
                    journey=journey,
                    title="Arrange insurance",
                    description="Your insurer will need the VIN: it is on your order confirmation.",
                    due_date=(now + timedelta(days=5)).date(),
                ),
                CustomerTask(
                    journey=journey,
                    title="Send us your driving licence details",
                    description="We register the car in your name before the handover.",
                    due_date=(now + timedelta(days=3)).date(),
                ),
                CustomerTask(
                    journey=journey,
                    title="Sign the finance papers",
                    done_at=now - timedelta(days=25),
                ),
            ]
        )
        PromisedItem.objects.create(
            journey=journey, name="Rubber floor mats", due_date=(now + timedelta(days=9)).date()
        )
        Agreement.objects.create(
            journey=journey,
            kind=AgreementKind.LEASE,
            title="Your current lease car",
            ends_on=(now + timedelta(days=20)).date(),
            next_steps="Bring it to the handover and we return it to the leasing company "
            "for you, or extend the lease month by month from your account with them.",
        )
        london = ZoneInfo("Europe/London")
        # On the day the handover is expected (the carriers' ETAs decide it), not another.
        journey.refresh_from_db()
        day = journey.eta or timezone.localdate(now + timedelta(days=9), london)
        starts = datetime.combine(day, time(10, 30), tzinfo=london)
        Appointment.objects.create(
            journey=journey,
            title="Handover of your Aurora GT",
            starts_at=starts,
            arrive_at=starts - timedelta(minutes=10),
            duration=timedelta(hours=1),
            place_name="Milepost Motors Bristol",
            address="12 Harbourside Way\nBristol BS1 5TY",
            time_zone="Europe/London",
            what_to_bring="Your driving licence and proof of insurance.",
            milestone=journey.milestones.get(stage__key="handover"),
        )
        Message.objects.create(
            journey=journey,
            from_staff=True,
            body="Hello Alex, your car is on the ship to Portbury and on schedule. "
            "Reply here any time if you have a question.",
        )

    def _kitchen(self, owner: User, template: JourneyTemplate, now: datetime) -> None:
        """Sam's, who reads Spanish: the company writes the journey's own words (its
        title, tasks, promises) in the customer's language; the stages' come translated
        with the template."""
        journey = _staff_driven(
            owner,
            template,
            now,
            title="Cocina Lumen, verde salvia",
            reference=KITCHEN_REFERENCE,
            days=(12, 30),
            reached=[("order_confirmed", 12), ("survey", 9), ("manufacturing", 6)],
        )
        CustomerTask.objects.create(
            journey=journey,
            title="Vacíe la cocina antes de la entrega",
            due_date=(now + timedelta(days=14)).date(),
        )
        PromisedItem.objects.create(journey=journey, name="Cubertero de regalo")

    def _broadband(self, owner: User, template: JourneyTemplate, now: datetime) -> None:
        """A full-fibre install: the line checked, an engineer's morning visit booked
        (someone must be home from its start), the router promised."""
        journey = _staff_driven(
            owner,
            template,
            now,
            title="Full fibre 900 at 4 Elm Grove",
            reference=BROADBAND_REFERENCE,
            days=(6, 8),
            reached=[("order_confirmed", 6), ("line_check", 4), ("engineer_booked", 1)],
        )
        visit = timezone.localtime(now + timedelta(days=4), ZoneInfo("Europe/London"))
        starts = visit.replace(hour=8, minute=0, second=0, microsecond=0)
        Appointment.objects.create(
            journey=journey,
            title="Engineer's visit",
            starts_at=starts,
            arrive_at=starts,
            duration=timedelta(hours=5),
            place_name="Your home",
            address="4 Elm Grove\nLeeds LS6 2AB",
            time_zone="Europe/London",
            what_to_bring="An adult at home for the whole morning, and a clear path to "
            "where the line comes in.",
            visit=True,
            milestone=journey.milestones.get(stage__key="installation"),
        )
        CustomerTask.objects.create(
            journey=journey,
            title="Choose where the router goes",
            description="Near a power socket, within 5 metres of where the line enters.",
            due_date=(now + timedelta(days=3)).date(),
        )
        PromisedItem.objects.create(journey=journey, name="Wi-Fi booster for the top floor")
