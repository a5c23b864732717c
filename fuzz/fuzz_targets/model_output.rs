#![no_main]
// See `missions::fuzzing::model_output` for the input's shape and the properties checked.
libfuzzer_sys::fuzz_target!(|data: &[u8]| missions::fuzzing::model_output(data));
