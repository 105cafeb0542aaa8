"""Models set by hand, with answers known in closed form, shared by the fairness tests."""

from __future__ import annotations

from pathlib import Path


def he_she_bert(model_dir: Path, vocab: list[str], layers: int = 1, pooler: tuple[float, ...] = (1.0, -1.0, 0.0, 0.0),
                scale: float = 1.0, bias_f: float = 0.5, cls_feature: bool = False) -> None:
    """A 4-wide BERT classifier ('f' = 0, 'm' = 1) saved with save_pretrained like a run's model: 'he' and 'she'
    embed on dimensions 0 and 1, queries and keys are 0 (uniform attention averages the tokens into [CLS]),
    values and attention outputs are the identity, the pooler's first row reads `pooler`, and
    logit_m - logit_f = 2 * scale * pooled_0 - bias_f. `cls_feature` gives [CLS] dimension 2, so [CLS] alone is
    not constant under the layer norm; with 0 layers [CLS] sees only itself."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    tokenizer = BertTokenizer(vocab={word: i for i, word in enumerate(vocab)}, do_lower_case=True)
    config = BertConfig(vocab_size=len(vocab), hidden_size=4, num_hidden_layers=layers, num_attention_heads=1,
                        intermediate_size=4, max_position_embeddings=32, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0, num_labels=2, id2label={0: "f", 1: "m"},
                        label2id={"f": 0, "m": 1})
    model = BertForSequenceClassification(config)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            parameter.fill_(1.0 if "LayerNorm.weight" in name else 0.0)
        embeddings = model.bert.embeddings.word_embeddings.weight
        embeddings[vocab.index("he"), 0] = embeddings[vocab.index("she"), 1] = 1.0
        if cls_feature:
            embeddings[vocab.index("[CLS]"), 2] = 1.0
        for layer in model.bert.encoder.layer:
            layer.attention.self.value.weight.copy_(torch.eye(4))
            layer.attention.output.dense.weight.copy_(torch.eye(4))
        model.bert.pooler.dense.weight[0] = torch.tensor(pooler)
        model.classifier.weight[:, 0] = torch.tensor([-scale, scale])
        model.classifier.bias[0] = bias_f
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
