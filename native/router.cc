// router.cc: placeholder.
