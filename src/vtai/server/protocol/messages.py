"""/v1/threads/{thread_id}/messages request bodies, and message content in the object's form."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from vtai.server.protocol.common import Metadata, Strict


class TextPart(Strict):
    type: Literal["text"]
    text: str


class ImageFile(Strict):
    file_id: str
    detail: Literal["auto", "low", "high"] | None = None


class ImageFilePart(Strict):
    type: Literal["image_file"]
    image_file: ImageFile


class ImageURL(Strict):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImageURLPart(Strict):
    type: Literal["image_url"]
    image_url: ImageURL


ContentPart = Annotated[TextPart | ImageFilePart | ImageURLPart, Field(discriminator="type")]


class AttachmentTool(Strict):
    type: Literal["code_interpreter", "file_search"]


class Attachment(Strict):
    file_id: str
    tools: list[AttachmentTool] = Field(default_factory=list)


class MessageCreate(Strict):
    role: Literal["user", "assistant"]
    content: str | Annotated[list[ContentPart], Field(min_length=1)]
    attachments: list[Attachment] | None = None
    metadata: Metadata = None

    @field_validator("content")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        if isinstance(value, str) and not value:
            raise ValueError("Message content must be non-empty.")
        return value


class MessageModify(Strict):
    metadata: Metadata = None


def content_parts(content: str | list[Any]) -> list[dict[str, Any]]:
    """Request content (a string or parts) in the message object's form."""
    if isinstance(content, str):
        return [{"type": "text", "text": {"value": content, "annotations": []}}]
    parts: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, TextPart):
            parts.append({"type": "text", "text": {"value": part.text, "annotations": []}})
        else:
            parts.append(part.model_dump(mode="json", exclude_none=True))
    return parts


def message_file_ids(message: Any) -> list[str]:
    """Files a message request refers to: attachments and image_file parts."""
    found = [a.file_id for a in message.attachments or []]
    if not isinstance(message.content, str):
        found += [p.image_file.file_id for p in message.content
                  if getattr(p, "type", "") == "image_file"]
    return found
