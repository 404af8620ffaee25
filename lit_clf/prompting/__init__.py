"""Prompts and answers, shared by the generative families (``decoder/``, ``api/``): the paper's prompt templates and
user prompt files (``templates``, ``paper_prompts/``), generic prompts written from task specs
(``generic_prompts``), prompt formats (``formats``), prompt and answer encoding (``encoding``), the answer syntax
(``answers``, ``inline``), the prompt options' checks (``options``), and scoring answers written as text
(``scoring``)."""
