/** WASI preview 1 functions that reach a file system by path: the sandbox refuses every one of them. */
export const WASI_PATH_FUNCTIONS = [
  'path_create_directory',
  'path_filestat_get',
  'path_filestat_set_times',
  'path_link',
  'path_open',
  'path_readlink',
  'path_remove_directory',
  'path_rename',
  'path_symlink',
  'path_unlink_file',
] as const;
