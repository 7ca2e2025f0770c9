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
R("hf_encoder", "steepest.models.hf:PretrainedEncoder")
R("tabular", "steepest.models.tabular:TabularModel")  # fastai's: entity embeddings of the index-encoded CSV columns
