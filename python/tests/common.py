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
