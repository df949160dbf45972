"""History benchmark: list, open and search chats when one user has a long history."""
