-- Dynamic images: a job may ask for its own base image; runners started for it carry that base
-- and take only jobs of the same image, so runners of different images never mix. NULL is the
-- pool's own image on both sides.
alter table runners add column image text;
