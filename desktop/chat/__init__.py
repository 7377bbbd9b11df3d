"""The chat workspace (workspace.ChatWorkspace): the conversation list beside the open conversation.

One concept per module: conversation_list, conversation_pane (title, settings, view, composer),
chat_view (the messages as one rich-text document), message_views / message_writer / markdown_blocks /
code_highlight (what a message shows and how it is drawn), chat_settings, context_bar, composer,
answer_flow (question -> stored, streamed answer), store_queue (ordered store calls off the UI thread),
chat_files (export / import).
"""
