from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    # Not "Accounts": allauth's email addresses have that section in the admin.
    verbose_name = "Customers"
