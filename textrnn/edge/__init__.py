"""Edge devices: LiteRT exports and the host runtime that runs them.

`textrnn <task> export-litert` converts a run's numeric signatures (token ids and
explicit states in, probabilities / logits / states out; fixed shapes, built-in
ops only) into one `model.tflite` beside its vocabularies and manifest.
Tokenization, sampling and search run on the host, in numpy, around
`ai_edge_litert`'s interpreter, and give the SavedModel's answers.

Host runtime (numpy, ai_edge_litert and the standard library; no TensorFlow):
    manifest     the export's file names, manifest, signature descriptions
    text         HostTokenizer: the in-graph tokenizer's ids from the exported vocabulary
    sampling     temperature / top-k / top-p and the seeded noise of decoding.sampling
    search       greedy and beam search of decoding.search, for one sentence
    runtime      EdgeExport: open an export (interpreter, tokenizers, signature runners)
    classifier   EdgeClassifier (sentiment)
    generator    EdgeLanguageModel, SamplingOptions (language model)
    translator   EdgeTranslator (translation)
    serving      the SavedModel's signature names over the above, for `--model`

Export time (TensorFlow):
    text_tables  the host tokenizer's tables, computed with the graph's own ops
    convert      export_litert: convert, check float32 parity, write the version atomically
    parity       check_tokenizers: host against graph ids, line by line (`check-tokenizer`)

Each task's signatures are its `litert_functions` (`textrnn/<task>/litert.py`).
"""
