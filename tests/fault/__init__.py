"""The fault and abuse suite (issue 11): property tests on every input path, with a log scan."""
