/**
 * The batch's job thread with plugin support, bundled as dist/batchWorker.js: the batch layer
 * cannot import plugins (it sits below them), so this entry registers the loader for the
 * plugins jobs carry, then starts the thread as src/batch/batchWorker.ts does.
 */
import { registerPluginLoader } from './portable.js';
import '../batch/batchWorker.js';

registerPluginLoader();
