"""The dialogue modes: LLM chat, knowledge-base QA, file chat, search-engine QA, agent."""
