from django.urls import path

from accounts import views

app_name = "accounts"

urlpatterns = [
    path("account/", views.profile, name="profile"),
    path("account/section/<str:section>/", views.profile_section, name="section"),
    path("account/addresses/", views.address_add, name="address-add"),
    path(
        "account/addresses/<int:address_id>/remove/",
        views.address_remove,
        name="address-remove",
    ),
    path(
        "account/proposals/<int:proposal_id>/<str:decision>/",
        views.proposal_decide,
        name="proposal-decide",
    ),
    path("account/history/", views.history, name="history"),
    path("account/export/", views.export, name="export"),
    path("account/delete/", views.delete, name="delete"),
    path("journeys/<str:reference>/sharing/", views.sharing, name="sharing"),
    path(
        "invitations/waiting/<int:share_id>/accept/",
        views.invitation_accept,
        name="invitation-accept",
    ),
    path("invitations/<str:token>/", views.invitation, name="invitation"),
]
