/** The host's view of kernel linear memory: the layout itself lives in assembly/memoryMap.ts, shared by both compilers. */
export * from '../../assembly/memoryMap.js';
