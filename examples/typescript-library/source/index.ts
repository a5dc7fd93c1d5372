/** The text in upper case, with an exclamation mark. */
export function shout(text: string): string {
  return `${text.toUpperCase()}!`;
}

/** Each word's first letter in upper case. */
export function title(text: string): string {
  return text.replace(/\b\w/g, (c) => c.toUpperCase());
}
