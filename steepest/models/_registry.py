"""The model registry. Builders receive `input_shape` and `num_outputs` from the data, so a
recipe never has to state sizes the data already knows. Rows name their class by import path."""

from __future__ import annotations

from steepest.registry import Registry

MODELS = Registry("model")

R = MODELS.register
R("mlp", "steepest.models.mlp:MLP")
R("cnn", "steepest.models.cnn:SmallCNN")
R("vgg", "steepest.models.vgg:VGG")
R("resnet", "steepest.models.resnet:ResNet")
R("efficientnet_lite0", "steepest.models.efficientnet:EfficientNetLite0")  # ImageNet weights: finetune.pretrained efficientnet-lite0
R("lstm", "steepest.models.rnn:LSTMModel")
R("gru", "steepest.models.rnn:GRUModel")
R("transformer_encoder", "steepest.models.transformer:TransformerEncoderModel")
R("causal_lm", "steepest.models.transformer:CausalLM")
R("gpt2", "steepest.models.gpt2:GPT2", summary="GPT-2 (Radford et al. 2019), any size: n_layer, n_head, n_embd, block_size, vocab_size, dropout, bias.")
R("gpt2_124m", "steepest.models.gpt2:GPT2", defaults={"n_layer": 12, "n_head": 12, "n_embd": 768, "block_size": 1024, "vocab_size": 50257},
  summary="GPT-2 small, 124M parameters (12 layers, 12 heads, 768 wide, 1024 positions); vocab_size: the tokenizer's.")
R("hf_encoder", "steepest.models.hf:PretrainedEncoder")
R("tabular", "steepest.models.tabular:TabularModel")  # fastai's: entity embeddings of the index-encoded CSV columns
