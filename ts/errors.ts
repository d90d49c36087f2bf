/** Errors raised by the facade. Native failures arrive as plain `Error`s with the engine's message. */
export class Yolo26Error extends Error {
  readonly code: string;
  constructor(message: string, code = 'YOLO26_ERROR') {
    super(message);
    this.name = 'Yolo26Error';
    this.code = code;
  }
}

/** A user option failed validation: names the option and what is accepted. */
export class OptionError extends Yolo26Error {
  readonly option: string;
  constructor(message: string, option: string) {
    super(message, 'YOLO26_BAD_OPTION');
    this.name = 'OptionError';
    this.option = option;
  }
}
