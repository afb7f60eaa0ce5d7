// Every GraphQL operation the app sends. GraphQL Code Generator (codegen.ts) checks them
// against ../supergraph/supergraph.graphql and types their results, so `npm run build` fails
// when one no longer matches the schema.
//
// Costs stay far below the router's limit (2000 per subgraph answer, ARCHITECTURE.md
// "GraphQL"): lists ask for 12 to 24 items.

import { graphql } from '../gql';

export const VideoCardFields = graphql(`
  fragment VideoCardFields on Video {
    id
    title
    viewCount
    createdAt
    publishedAt
    owner {
      id
      displayName
    }
    playback {
      thumbnailUrl
      durationSeconds
      storyboardUrl
      storyboardVttUrl
    }
  }
`);

export const FeedQuery = graphql(`
  query Feed($first: Int!, $after: String) {
    feed(first: $first, after: $after) {
      nodes {
        ...VideoCardFields
      }
      pageInfo {
        hasNextPage
        endCursor
      }
    }
  }
`);

export const SearchQuery = graphql(`
  query Search($query: String!, $first: Int!, $after: String) {
    search(query: $query, first: $first, after: $after) {
      nodes {
        ...VideoCardFields
        description
      }
      pageInfo {
        hasNextPage
        endCursor
      }
    }
  }
`);

export const WatchQuery = graphql(`
  query Watch($id: ID!) {
    video(id: $id) {
      id
      title
      description
      tags
      category
      visibility
      status
      createdAt
      publishedAt
      likeCount
      viewerHasLiked
      commentCount
      viewCount
      viewerProgress {
        positionSeconds
        watchedFraction
      }
      owner {
        id
        displayName
        avatarUrl
        subscriberCount
        viewerIsSubscribed
      }
      playback {
        hlsUrl
        durationSeconds
        thumbnailUrl
        storyboardUrl
        storyboardVttUrl
        renditions {
          name
          width
          height
          bitrate
        }
      }
      processing {
        state
        playable
        error
      }
    }
  }
`);

export const RelatedQuery = graphql(`
  query Related($id: ID!, $first: Int!) {
    video(id: $id) {
      id
      related(first: $first) {
        ...VideoCardFields
      }
    }
  }
`);

export const CommentFields = graphql(`
  fragment CommentFields on Comment {
    id
    body
    videoId
    parentId
    createdAt
    editedAt
    author {
      id
      displayName
    }
  }
`);

export const CommentsQuery = graphql(`
  query Comments($id: ID!, $first: Int!, $after: String) {
    video(id: $id) {
      id
      commentCount
      comments(first: $first, after: $after) {
        nodes {
          ...CommentFields
        }
        pageInfo {
          hasNextPage
          endCursor
        }
      }
    }
  }
`);

export const ChannelQuery = graphql(`
  query Channel($id: ID!, $first: Int!, $after: String) {
    user(id: $id) {
      id
      username
      displayName
      bio
      avatarUrl
      subscriberCount
      viewerIsSubscribed
      videos(first: $first, after: $after) {
        nodes {
          ...VideoCardFields
          status
          visibility
        }
        pageInfo {
          hasNextPage
          endCursor
        }
      }
    }
  }
`);

export const MeQuery = graphql(`
  query Me {
    me {
      id
      username
      displayName
      email
      bio
      avatarUrl
    }
  }
`);

export const VideoStateQuery = graphql(`
  query VideoState($id: ID!) {
    video(id: $id) {
      id
      title
      status
      failure
      processing {
        state
        playable
        error
      }
    }
  }
`);

export const CreateVideoMutation = graphql(`
  mutation CreateVideo($input: CreateVideoInput!) {
    createVideo(input: $input) {
      video {
        id
        title
        status
        visibility
      }
      upload {
        id
        url
        expiresAt
      }
    }
  }
`);

export const RecordPlaybackMutation = graphql(`
  mutation RecordPlayback($input: PlaybackInput!) {
    recordPlayback(input: $input) {
      applied
      viewCounted
    }
  }
`);

export const LikeVideoMutation = graphql(`
  mutation LikeVideo($id: ID!) {
    likeVideo(id: $id) {
      id
      likeCount
      viewerHasLiked
    }
  }
`);

export const UnlikeVideoMutation = graphql(`
  mutation UnlikeVideo($id: ID!) {
    unlikeVideo(id: $id) {
      id
      likeCount
      viewerHasLiked
    }
  }
`);

export const AddCommentMutation = graphql(`
  mutation AddComment($videoId: ID!, $body: String!, $parentId: ID) {
    addComment(videoId: $videoId, body: $body, parentId: $parentId) {
      ...CommentFields
    }
  }
`);

export const EditCommentMutation = graphql(`
  mutation EditComment($id: ID!, $body: String!) {
    editComment(id: $id, body: $body) {
      ...CommentFields
    }
  }
`);

export const DeleteCommentMutation = graphql(`
  mutation DeleteComment($id: ID!) {
    deleteComment(id: $id)
  }
`);

export const SubscribeMutation = graphql(`
  mutation Subscribe($channelId: ID!) {
    subscribe(channelId: $channelId) {
      id
      subscriberCount
      viewerIsSubscribed
    }
  }
`);

export const UnsubscribeMutation = graphql(`
  mutation Unsubscribe($channelId: ID!) {
    unsubscribe(channelId: $channelId) {
      id
      subscriberCount
      viewerIsSubscribed
    }
  }
`);

export const UpdateProfileMutation = graphql(`
  mutation UpdateProfile($input: ProfileInput!) {
    updateProfile(input: $input) {
      id
      displayName
      bio
      avatarUrl
    }
  }
`);

export const VideoProgressSubscription = graphql(`
  subscription VideoProgress($videoId: ID!) {
    videoProgress(videoId: $videoId) {
      videoId
      stage
      percent
      rendition
      fps
      etaSeconds
      error
    }
  }
`);

export const DashboardQuery = graphql(`
  query Dashboard {
    dashboard {
      totalViews
      totalLikes
      totalComments
      videos {
        id
        title
        description
        tags
        category
        visibility
        status
        failure
        createdAt
        viewCount
        likeCount
        commentCount
        playback {
          thumbnailUrl
          durationSeconds
        }
        processing {
          state
          playable
        }
      }
    }
  }
`);

export const UpdateVideoMutation = graphql(`
  mutation UpdateVideo($id: ID!, $input: UpdateVideoInput!) {
    updateVideo(id: $id, input: $input) {
      id
      title
      description
      tags
      category
      visibility
      status
    }
  }
`);

export const DeleteVideoMutation = graphql(`
  mutation DeleteVideo($id: ID!) {
    deleteVideo(id: $id)
  }
`);

export const SubscriptionsFeedQuery = graphql(`
  query SubscriptionsFeed($first: Int!, $after: String) {
    subscriptionsFeed(first: $first, after: $after) {
      nodes {
        ...VideoCardFields
      }
      pageInfo {
        hasNextPage
        endCursor
      }
    }
  }
`);
