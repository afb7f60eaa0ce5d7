/** The categories media accepts (crates/media/src/validation.rs; the schema does not list them). */
export const CATEGORIES = [
  'autos',
  'comedy',
  'education',
  'entertainment',
  'film',
  'gaming',
  'howto',
  'music',
  'news',
  'nonprofit',
  'people',
  'pets',
  'science',
  'sports',
  'tech',
  'travel',
] as const;
