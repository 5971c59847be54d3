//! The C ABI of banguard (`banguard.h`). Filled in by the C ABI work.
