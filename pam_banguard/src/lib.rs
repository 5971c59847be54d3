//! pam_banguard.so. Filled in by the module work.
