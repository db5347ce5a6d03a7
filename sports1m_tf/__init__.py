"""sports1m_tf: the video CNNs of Karpathy et al., CVPR 2014, for TensorFlow/Keras.

Sub-modules are imported on use (`sports1m_tf.models`, `sports1m_tf.data`, ...)
so that light commands (the synthetic-data generator) do not pay for TensorFlow.
"""
__version__ = "0.1.0"
