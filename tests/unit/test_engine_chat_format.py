"""Chat templates: the model's own, rendered in a sandbox; ChatML when it has none."""
import pytest

from core.engine.chat_format import FALLBACK_SOURCE, MODEL_SOURCE, ChatTemplate, ChatTemplateError

SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
LLAMA3_LIKE = ("{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
               "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
               "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


def test_the_models_own_template_is_used():
    template = ChatTemplate.for_model(SMOLLM2_TEMPLATE, bos_token="<|im_start|>", eos_token="<|im_end|>")
    assert template.source == MODEL_SOURCE
    prompt = template.render(MESSAGES)
    assert prompt.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert prompt.endswith("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n")


def test_special_token_texts_reach_the_template():
    template = ChatTemplate.for_model(LLAMA3_LIKE, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>")
    assert template.render(MESSAGES).startswith("<|begin_of_text|><|start_header_id|>user")


def test_a_model_without_a_template_gets_chatml():
    template = ChatTemplate.for_model(None, bos_token="", eos_token="")
    assert template.source == FALLBACK_SOURCE
    assert template.render(MESSAGES) == ("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
                                        "<|im_start|>assistant\n")


def test_a_broken_template_falls_back_to_chatml():
    assert ChatTemplate.for_model("{% for %}", bos_token="", eos_token="").source == FALLBACK_SOURCE


def test_the_template_cannot_reach_python_internals():
    hostile = "{{ messages.__class__.__mro__[1].__subclasses__() }}"
    template = ChatTemplate.for_model(hostile, bos_token="", eos_token="")
    with pytest.raises(Exception):
        template.render(MESSAGES)


def test_raise_exception_in_a_template_becomes_a_chat_template_error():
    strict = "{% if messages[0]['role'] != 'system' %}{{ raise_exception('System first!') }}{% endif %}"
    template = ChatTemplate.for_model(strict, bos_token="", eos_token="")
    with pytest.raises(ChatTemplateError, match="System first!"):
        template.render(MESSAGES)
