"""AWS-style error answers: JSON for API Gateway, query-protocol XML for STS.

Stand-ins raise these exceptions from deep inside request handling and convert them to a
:class:`~localcloud.server.Response` in one place, so every error has the exact wire shape
the real service uses.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence

from localcloud.server import Response, json_response

__all__ = ["STS_NAMESPACE", "ApiGatewayError", "StsError"]

STS_NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"


class ApiGatewayError(Exception):
    """An API Gateway error: ``{"message": ...}`` plus the ``x-amzn-ErrorType`` header."""

    def __init__(
        self,
        status: int,
        error_type: str,
        message: str,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(f"{status} {error_type}: {message}")
        self.status = status
        self.error_type = error_type
        self.message = message
        self.headers = list(headers)

    def to_response(self) -> Response:
        """Render as API Gateway does."""
        return json_response(
            self.status,
            {"message": self.message},
            [("x-amzn-ErrorType", self.error_type), *self.headers],
        )


class StsError(Exception):
    """An STS query-protocol error, rendered as ``<ErrorResponse>`` XML."""

    def __init__(self, code: str, message: str, status: int = 400, error_type: str = "Sender") -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.error_type = error_type

    def to_response(self, request_id: str) -> Response:
        """Render as STS does; botocore reads ``Error/Code`` and ``Error/Message``."""
        root = ET.Element("ErrorResponse", xmlns=STS_NAMESPACE)
        error = ET.SubElement(root, "Error")
        ET.SubElement(error, "Type").text = self.error_type
        ET.SubElement(error, "Code").text = self.code
        ET.SubElement(error, "Message").text = self.message
        ET.SubElement(root, "RequestId").text = request_id
        return xml_response(self.status, root, request_id)


def xml_response(status: int, root: ET.Element, request_id: str) -> Response:
    """Serialise an XML document the way the AWS query protocol answers."""
    body = ET.tostring(root, encoding="utf-8", xml_declaration=False)
    return Response(status, body, [("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id)])
