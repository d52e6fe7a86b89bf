"""A faster, exact forward pass for BERT sequence classifiers when only the logits are needed.

The classifier reads only the [CLS] position of the last layer, so in that layer only [CLS] needs
a query, an attention output and a feed-forward pass; keys and values still come from every token.
For a 6-layer teacher this skips about 14% of the forward FLOPs. Batches carry no padding (one
length per batch), so no attention mask is needed. Other architectures use the plain forward.
"""

import torch
import torch.nn.functional as F


def supports_fast_path(model) -> bool:
    bert = getattr(model, "bert", None)
    return (type(model).__name__ == "BertForSequenceClassification" and bert is not None
            and getattr(bert, "pooler", None) is not None and model.config.problem_type in (None, "single_label_classification"))


def cls_only_logits(model, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
    """Logits of an unpadded batch, equal to `model(input_ids, token_type_ids).logits` (eval mode)."""
    bert = model.bert
    h = bert.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)  # (bs, len, hidden)
    layers = bert.encoder.layer
    for layer in layers[:-1]:
        out = layer(h)
        h = out[0] if isinstance(out, tuple) else out
    last = layers[-1]
    att = last.attention.self
    bs, n, _ = h.shape
    heads, d = att.num_attention_heads, att.attention_head_size
    q = att.query(h[:, :1]).view(bs, 1, heads, d).transpose(1, 2)  # (bs, heads, 1, d)
    k = att.key(h).view(bs, n, heads, d).transpose(1, 2)  # (bs, heads, len, d)
    v = att.value(h).view(bs, n, heads, d).transpose(1, 2)  # (bs, heads, len, d)
    ctx = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(bs, 1, heads * d)  # (bs, 1, hidden)
    a = last.attention.output.LayerNorm(last.attention.output.dense(ctx) + h[:, :1])  # (bs, 1, hidden)
    cls = last.output.LayerNorm(last.output.dense(last.intermediate(a)) + a)  # (bs, 1, hidden)
    return model.classifier(bert.pooler(cls))  # pooler reads position 0 -> (bs, num_labels)
