"""Preference data: canonical records, hub-format converters, array_record storage, grain input.

Import the submodules; this package imports nothing so `python -m arm_jax.data.build` stays clean.

  schema      Record, Skip, validate(record) -> Skip | None, content_id(source, *parts) -> str,
              record_to_json(record) -> dict, record_from_json(obj) -> Record | Skip,
              to_example(record) -> dict, from_example(example) -> Record, the reason codes
  converters  CONVERTERS (format name -> converter), ConvertOptions(source, column_map,
              winner_values), convert_row(fmt, row, opts) -> list[Record | Skip],
              parse_pairs(text) -> dict, winner_values(text) -> dict,
              place_pair(id, chosen, rejected) -> (a, b, winner),
              shuffle_candidates(id, chosen, rejected) -> (candidates, preferred),
              REWARDBENCH_SECTIONS
  readers     read_rows(path) -> Iterator[SourceRow]  (.jsonl / .ndjson, .json, .parquet)
  storage     write_dataset(records, data_dir, split="train") -> str,
              dataset_dir(build_dir) -> str, load_source(build_dir, split="train"),
              read_records(build_dir, split="train") -> list[Record],
              make_dataset(build_dir, *, split="train", seed=0, process_index=None,
                           process_count=None, batch_size=None, drop_remainder=False,
                           num_epochs=1) -> grain.IterDataset
  build       build(inputs, fmt, out_dir, *, strict=False, options=None, budget=None,
                    split="train", overwrite=False) -> report dict,
              TokenBudget(tokenizer, max_tokens, truncate=False), BuildError,
              main(argv) for `python -m arm_jax.data.build`
"""
