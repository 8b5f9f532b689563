"""The decoding engine of the in-process causal backend, split as transformers
splits `generation/`:

- `settings`: its knobs (`DecodingSettings`), in one place;
- `prefix_cache`: the prompts' shared beginning, computed once;
- `prefill`: the prompts' pass (padded, or laid end to end on a CPU);
- `greedy`: the greedy loop that drops finished answers;
- `candidates`: guessed tokens checked in the same pass (prompt lookup);
- `logits_process`: the overflow check, the log-probability recorder;
- `stopping_criteria`: the runaway cap of an answer;
- `grammar`: a task's constraint compiled and enforced with xgrammar;
- `output_head`: the output layer over the allowed tokens only;
- `packed_weights`, `gqa_attention`: CPU kernels' layouts and attention;
- `decoded`: generated ids as scored answers;
- `bio_forced`: forced-word BIO decoding for seq2seq models.

Every shortcut gives the answers of plain greedy decoding (tested).
"""
