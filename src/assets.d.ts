// Text files embedded in the binary with `import ... with { type: "text" }`.
declare module "*.sh" {
  const text: string;
  export default text;
}
declare module "*.patch" {
  const text: string;
  export default text;
}
