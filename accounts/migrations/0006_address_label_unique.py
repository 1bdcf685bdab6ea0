import django.db.models.functions.text
from django.db import migrations, models


# accounts.models.RELABELLED_NOTE, as it was written (the history shows it translated).
RELABELLED_NOTE = "Two of your addresses had this label: this one was numbered."


def relabel_duplicates(apps, schema_editor):
    """Addresses that share a label (whatever its case) before the constraint: the
    second and later get a number, "Home (2)", so that nothing is lost; each renaming
    is in the customer's history, as every change to their record is."""
    Address = apps.get_model("accounts", "Address")
    ProfileChange = apps.get_model("accounts", "ProfileChange")
    seen: dict[tuple[int, str], int] = {}
    taken = {(a.profile_id, a.label.lower()) for a in Address.objects.only("profile", "label")}
    for address in Address.objects.order_by("profile_id", "id").select_related("profile"):
        key = (address.profile_id, address.label.lower())
        seen[key] = seen.get(key, 0) + 1
        if seen[key] == 1:
            continue
        number = seen[key]
        while True:
            suffix = f" ({number})"
            label = address.label[: 40 - len(suffix)] + suffix
            if (address.profile_id, label.lower()) not in taken:
                break
            number += 1
        taken.add((address.profile_id, label.lower()))
        ProfileChange.objects.create(
            user_id=address.profile.user_id,
            field="address_label",
            old_value=address.label,
            new_value=label,
            source="system",
            note=RELABELLED_NOTE,
        )
        address.label = label
        address.save(update_fields=["label"])


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0005_proposal_partner"),
    ]

    operations = [
        migrations.RunPython(relabel_duplicates, migrations.RunPython.noop, elidable=True),
        migrations.AddConstraint(
            model_name="address",
            constraint=models.UniqueConstraint(
                models.F("profile"),
                django.db.models.functions.text.Lower("label"),
                name="one_address_per_label",
                violation_error_message="You have an address with this label already.",
            ),
        ),
    ]
