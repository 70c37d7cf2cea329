"""The one path by which the adapter sends messages: paced, and faithful to the plan.

Every message (relayed post, notice, answer to a command, prompt) goes through ``Outbox`` so
the pacing sees all of them. A relayed post is sent with a recorder (``on_piece``): each part
is recorded as it goes out, so a 429 or a long pacing wait before the next part is handed back
to the core as RateLimited and the delivery resumes there later. Without a recorder (notices,
answers), once the first message is out a 429 on a following part is waited out here (that chat
only): a retry of the whole would repeat the parts already shown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from telegram import (
    Bot,
    ForceReply,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaPhoto,
    LinkPreviewOptions,
    Message,
    ReplyParameters,
)
from telegram.constants import ParseMode
from telegram.error import BadRequest, RetryAfter

from adapters.telegram.failures import retry_after_seconds
from adapters.telegram.pacing import Pacer
from adapters.telegram.render import Piece

log = logging.getLogger(__name__)

# How many 429s a continuation part of an unrecorded send may wait out before it gives up.
CONTINUATION_RETRIES = 3

# Called with (piece index, message ids) once a piece is out, before the next piece is sent.
PieceRecorder = Callable[[int, Sequence[int]], Awaitable[None]]


def markup_of(piece: Piece) -> InlineKeyboardMarkup | None:
    """The inline keyboard of ``piece``, or None."""
    if not piece.keyboard:
        return None
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(b.label, url=b.url)
                if b.url
                else InlineKeyboardButton(b.label, callback_data=b.callback_data)
                for b in row
            ]
            for row in piece.keyboard
        ]
    )


class Outbox:
    """Sends planned pieces to one chat (and topic) through the pacer."""

    def __init__(self, bot: Bot, pacer: Pacer, max_wait: float | None) -> None:
        self._bot = bot
        self._pacer = pacer
        self._max_wait = max_wait

    async def send(
        self,
        chat_id: int | str,
        pieces: Sequence[Piece],
        thread_id: int | None = None,
        reply_to: int | None = None,
        patient: bool = False,
        start: int = 0,
        on_piece: PieceRecorder | None = None,
    ) -> list[int]:
        """Send ``pieces[start:]`` in order to ``chat_id``; return the ids of the messages created.

        With ``on_piece``, it is awaited after each piece but the last, and every piece is
        treated like the first: a 429 raises (RetryAfter penalises only this chat in the pacer)
        and a chat whose next slot is further than ``max_wait`` raises RateLimited before
        sending, so the caller resumes at that piece later instead of sleeping through it.
        Without it, the first piece sent raises as above, and later ones wait for pacing and
        wait out a few 429s. ``patient`` waits for pacing however long it takes.
        """
        ids: list[int] = []
        for index in range(start, len(pieces)):
            piece = pieces[index]
            bounded = not patient and (index == start or on_piece is not None)
            attempts = 0
            while True:
                try:
                    await self._pacer.acquire(chat_id, self._max_wait if bounded else None)
                    messages = await self._send_one(chat_id, piece, thread_id, reply_to if index == 0 else None)
                    break
                except RetryAfter as exc:
                    wait = retry_after_seconds(exc)
                    self._pacer.penalize(chat_id, wait)
                    attempts += 1
                    if index == start or on_piece is not None or attempts > CONTINUATION_RETRIES:
                        raise
                    log.info("telegram.continuation_wait chat=%s part=%d wait=%.1fs", chat_id, index, wait)
                    await asyncio.sleep(0)  # the pacer holds the chat for `wait`
            sent = [m.message_id for m in messages]
            ids.extend(sent)
            if on_piece is not None and index < len(pieces) - 1:
                await on_piece(index, sent)
        return ids

    async def _send_one(self, chat_id: int | str, piece: Piece, thread_id: int | None, reply_to: int | None) -> Sequence[Message]:
        reply = ReplyParameters(reply_to, allow_sending_without_reply=True) if reply_to else None
        if len(piece.photos) >= 2:
            media = [
                InputMediaPhoto(url, caption=piece.text if i == 0 else None, parse_mode=ParseMode.HTML if i == 0 else None)
                for i, url in enumerate(piece.photos)
            ]
            return await self._bot.send_media_group(chat_id, media, message_thread_id=thread_id, reply_parameters=reply)
        if piece.photos:
            message = await self._bot.send_photo(
                chat_id,
                piece.photos[0],
                caption=piece.text,
                parse_mode=ParseMode.HTML,
                reply_markup=markup_of(piece),
                message_thread_id=thread_id,
                reply_parameters=reply,
            )
            return [message]
        message = await self._bot.send_message(
            chat_id,
            piece.text,
            parse_mode=ParseMode.HTML,
            reply_markup=markup_of(piece),
            message_thread_id=thread_id,
            reply_parameters=reply,
            # The post's own link is in the text; a preview card would double the message.
            link_preview_options=LinkPreviewOptions(is_disabled=True),
        )
        return [message]

    async def edit(self, chat_id: int | str, message_id: int, piece: Piece) -> None:
        """Replace a message's text and inline keyboard (none: removed). Telegram answers
        "message is not modified" when nothing changes: not an error here."""
        await self._pacer.acquire(chat_id)
        try:
            await self._bot.edit_message_text(
                piece.text,
                chat_id=chat_id,
                message_id=message_id,
                parse_mode=ParseMode.HTML,
                # An empty keyboard removes the buttons; leaving reply_markup out would keep them.
                reply_markup=markup_of(piece) or InlineKeyboardMarkup([]),
                link_preview_options=LinkPreviewOptions(is_disabled=True),
            )
        except BadRequest as exc:
            if "not modified" not in str(exc).lower():
                raise

    async def prompt(self, chat_id: int | str, text: str, thread_id: int | None, placeholder: str) -> int:
        """Send a ForceReply prompt (plain text, escaped by the caller); return its message id."""
        await self._pacer.acquire(chat_id)
        message = await self._bot.send_message(
            chat_id,
            text,
            parse_mode=ParseMode.HTML,
            reply_markup=ForceReply(selective=False, input_field_placeholder=placeholder[:64]),
            message_thread_id=thread_id,
        )
        return message.message_id
