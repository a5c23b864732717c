#![no_main]
// See `missions::fuzzing::repo_config` for the input's shape and the properties checked.
libfuzzer_sys::fuzz_target!(|data: &[u8]| missions::fuzzing::repo_config(data));
