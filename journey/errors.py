"""The project's one application error type.

Services raise it; the API's exception handler and the forms turn it into a 4xx
JSON body or a form message. ``fields`` names the input at fault.
"""


class ApplicationError(Exception):
    def __init__(
        self,
        message: str,
        *,
        code: str = "invalid",
        fields: dict[str, list[str]] | None = None,
        status: int = 400,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.fields = fields or {}
        self.status = status
